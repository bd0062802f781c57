#!/usr/bin/python3
"""C engine vs PyTorch reference on the tiny fixtures (tests/fixtures/tiny, made by models/tools/make_tiny.py).

    check_parity.py TOOL [FIXTURE_DIR [THREADS...]]   TOOL = build/tests/logits_dump (or a wrapper with the same CLI,
                                                     e.g. "node tests/wasm/logits_dump.mjs --build simd-mt");
                                                     every check runs once per thread count (default: 1)

Per model file: logits after every position (prefill + one-token decodes), teacher-forced top-1 agreement, and the
greedy continuation. Tolerances (absolute, on logits whose std is printed):
  f32, f16   max |C - ref| <= 1e-4; greedy continuation identical.
  q8_0, q4_0 the engine quantizes matmul inputs to Q8_0 (as ggml does); the reference does the same (its *.actq8 files).
             An activation on a rounding boundary may land one quantum apart (the reference measured 0.015 between its
             own f32 and f64 emulations), so: max |C - ref| <= 0.05 and mean <= 1e-4. The distance to the
             exact-activation reference is printed too.
  Every row whose reference top1-top2 margin exceeds 2*tol must agree on top-1; a greedy continuation may only
  diverge at a row whose reference margin is within 2*tol.
Prints one line per check and ends with "N passed, N failed".
"""
import json
import os
import shlex
import subprocess
import sys
import tempfile

import numpy as np


def main():
    tool = shlex.split(sys.argv[1])  # a program, or a command with its own arguments ("node tests/wasm/logits_dump.mjs")
    fdir = sys.argv[2] if len(sys.argv) > 2 else os.path.join("tests", "fixtures", "tiny")
    thread_counts = sys.argv[3:] or ["1"]
    with open(os.path.join(fdir, "manifest.json"), encoding="utf-8") as f:
        man = json.load(f)
    n_prompt = len(man["prompt_ids"])
    passed = failed = 0
    summary = []

    def check(ok, name, detail):
        nonlocal passed, failed
        passed += bool(ok)
        failed += not ok
        print(f"{'ok' if ok else 'FAIL'} {name}: {detail}", flush=True)

    for fname, e, extra in [(f, e, ["--threads", t]) for t in thread_counts for f, e in man["models"].items()]:
        gguf = os.path.join(fdir, fname)
        quant = e["ftype"] in ("q8_0", "q4_0")
        sfx = "_actq8" if quant else ""
        seq, greedy_ref, margins = e["sequence" + sfx], e["greedy" + sfx], np.array(e["margins" + sfx])
        rows, vocab = e["logits" + sfx + "_shape"]
        ref = np.fromfile(os.path.join(fdir, e["logits" + sfx + "_file"]), dtype="<f4").reshape(rows, vocab)
        with tempfile.TemporaryDirectory() as td:
            out = os.path.join(td, "c.f32")
            r = subprocess.run([*tool, *extra, "logits", gguf, out, str(n_prompt), *map(str, seq)],
                               capture_output=True, text=True)
            if r.returncode != 0:
                check(False, f"{fname} logits", f"tool failed: {r.stderr.strip()}")
                continue
            got = np.fromfile(out, dtype="<f4").reshape(rows, vocab)
        diff = np.abs(got.astype(np.float64) - ref)
        tol, mean_tol = (0.05, 1e-4) if quant else (1e-4, 1e-4)
        note = ""
        if quant:
            exact = np.fromfile(os.path.join(fdir, e["logits_file"]), dtype="<f4").reshape(rows, vocab)
            note = f"; vs exact-activation reference max|d|={np.abs(got - exact).max():.3g}" if seq == e["sequence"] else ""
        check(diff.max() <= tol and diff.mean() <= mean_tol, f"{fname} t{extra[1]} logits",
              f"max|d|={diff.max():.3g} (tol {tol:.3g}) mean|d|={diff.mean():.3g} (tol {mean_tol:.3g}) (logit std {ref.std():.3g}){note}")
        top_c, top_r = got.argmax(1), ref.argmax(1)
        agree = float((top_c == top_r).mean())
        must = margins > 2 * tol
        check(bool((top_c == top_r)[must].all()), f"{fname} t{extra[1]} top1",
              f"teacher-forced top-1 agreement {agree * 100:.1f}% ({int((top_c == top_r).sum())}/{rows}); "
              f"all {int(must.sum())} rows with margin > {2 * tol:.3g} agree")
        r = subprocess.run([*tool, *extra, "greedy", gguf, str(len(greedy_ref)), *map(str, man["prompt_ids"])],
                           capture_output=True, text=True)
        greedy = [int(t) for t in r.stdout.split()] if r.returncode == 0 else []
        same = next((k for k in range(len(greedy_ref)) if k >= len(greedy) or greedy[k] != greedy_ref[k]),
                    len(greedy_ref))
        # A flip is legitimate only at a row where the reference itself was nearly tied.
        flip_margin = margins[n_prompt - 1 + same] if same < len(greedy_ref) else None
        ok = r.returncode == 0 and (flip_margin is None or flip_margin <= 2 * tol)
        check(ok, f"{fname} t{extra[1]} greedy", f"{same}/{len(greedy_ref)} tokens identical" +
              (f" (diverges where ref margin {flip_margin:.3g})" if flip_margin is not None else "") +
              ("" if r.returncode == 0 else f"; tool failed: {r.stderr.strip()}"))
        summary.append((fname, diff.max(), agree, same))
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
