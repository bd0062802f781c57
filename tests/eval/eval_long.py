#!/usr/bin/python3
"""`make eval-long`: long-context evaluation, computed by the C engine (build/edgeinf); Python only writes prompts,
parses the CLI's output and draws the tables/plots.

  passkey     Mohtashami & Jaggi (2023): instruction, repeated filler, the key line at a depth, the question. Accuracy
              over random 5-digit keys at each depth and length, per policy, all policies with the same KV budget
              (n_sink + window + seg tokens). `full` only where the prompt fits its training context.
  perplexity  held-out documents concatenated to each length, one pass per policy (`edgeinf perplexity`).
  cost        TTFT (prefill ms), decode tokens/s, KV + memory bytes, peak RSS vs context length.

Environment: EVAL_MODEL, EVAL_ADAPTER (edgeinfinite is skipped without one), EVAL_LENGTHS (e.g. "8192,32768"),
EVAL_DEPTHS, EVAL_KEYS (keys per depth), EVAL_PPL_LENGTHS, EVAL_COST_LENGTHS, EVAL_SINK/WINDOW/SEG, EVAL_OUT (docs).
"""
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLI = os.path.join(ROOT, "build", "edgeinf")
INSTRUCTION = ("There is an important info hidden inside a lot of irrelevant text. Find it and memorize them. "
               "I will quiz you about the important information there.")
FILLER = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."
KEY_LINE = "The pass key is {k}. Remember it. {k} is the pass key."
QUESTION = "What is the pass key? The pass key is"


def env_list(name, default, cast=int):
    v = os.environ.get(name)
    return [cast(x) for x in (v.split(",") if v else default)]


def run(args, **kw):
    t0 = time.time()
    r = subprocess.run([CLI, *args], capture_output=True, text=True, **kw)
    return r, time.time() - t0


def run_peak(args):
    """run() that also returns the child's own peak RSS in KB (os.wait4 on that one process: getrusage's
    RUSAGE_CHILDREN would report the maximum over every earlier run too). Output goes through temporary files so
    the process can be reaped by wait4 itself."""
    t0 = time.time()
    with tempfile.TemporaryFile("w+") as fo, tempfile.TemporaryFile("w+") as fe:
        p = subprocess.Popen([CLI, *args], stdout=fo, stderr=fe, text=True)
        _, status, ru = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        dt = time.time() - t0
        fo.seek(0)
        fe.seek(0)
        return subprocess.CompletedProcess(p.args, p.returncode, fo.read(), fe.read()), dt, ru.ru_maxrss


_CORPUS_IDS = {}


def corpus_ids(model, split):
    """Token ids (the model's own tokenizer, no BOS) of a corpus split (models/work/corpus/<split>.jsonl, documents
    joined by blank lines), tokenized once per (model, split); None when the split is missing."""
    key = (model, split)
    if key not in _CORPUS_IDS:
        src = os.path.join(ROOT, "models", "work", "corpus", f"{split}.jsonl")
        if not os.path.exists(src):
            return None
        with tempfile.TemporaryDirectory() as td:
            path = os.path.join(td, "split.txt")
            with open(path, "w", encoding="utf-8") as f:
                f.write("\n\n".join(json.loads(l)["text"] for l in open(src, encoding="utf-8")))
            _CORPUS_IDS[key] = run(["tokenize", "-m", model, "--no-bos", "-f", path])[0].stdout.split()
    return _CORPUS_IDS[key]


def write_prefix(model, ids, n, path):
    """Write exactly the first n tokens of ids as text (cut on a token boundary by the engine's own detokenizer)."""
    with open(path, "w", encoding="utf-8") as f:
        f.write(run(["detokenize", "-m", model, *ids[:n]])[0].stdout[:-1])


def perplexity(model, path, args):
    """(ppl, tokens, seconds) of `edgeinf perplexity` on a text file, or None (the error is printed)."""
    r, dt = run(["perplexity", "-m", model, "-f", path, *args])
    m = re.search(r"ppl=([\d.]+) tokens=(\d+)", r.stdout)
    if not m:
        print(f"perplexity {' '.join(args)}: failed: {r.stderr.strip()[-300:]}", file=sys.stderr)
        return None
    return float(m.group(1)), int(m.group(2)), dt


def keys_per_length(lengths):
    """EVAL_KEYS: one count for every length ("2"), or per length ("8192:4,32768:2,1048576:1"; unlisted: 1)."""
    v = os.environ.get("EVAL_KEYS", "2")
    if ":" not in v:
        return {L: int(v) for L in lengths}
    per = {int(a): int(b) for a, b in (x.split(":") for x in v.split(",") if x)}
    return {L: per.get(L, 1) for L in lengths}


def n_tokens(model, text):
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False, encoding="utf-8") as f:
        f.write(text)
    r, _ = run(["tokenize", "-m", model, "--no-bos", "-f", f.name])
    os.unlink(f.name)
    return len(r.stdout.split())


def passkey_prompt(model, length, depth, key, filler_tokens):
    """Prompt of about `length` tokens with the key line at fraction `depth` of the filler."""
    n_fill = max(1, (length - 120) // filler_tokens)
    at = round(depth * n_fill)
    parts = [INSTRUCTION] + [FILLER] * at + [KEY_LINE.format(k=key)] + [FILLER] * (n_fill - at) + [QUESTION]
    return " ".join(parts)


def policy_args(policy, layout, adapter):
    a = ["--policy", policy]
    if policy != "full":
        a += ["--n-sink", str(layout[0]), "--window", str(layout[1]), "--seg", str(layout[2])]
    if policy == "edgeinfinite":
        a += ["--adapter", adapter]
    return a


def default_layout(adapter):
    """(n_sink, window, seg) the adapter was trained for (its GGUF metadata), else 16/768/128: every policy is
    evaluated with the same cache budget, the one the edgeinfinite adapter uses."""
    if os.path.exists(adapter):
        sys.path.insert(0, os.path.join(ROOT, "models"))
        from edgeinf_ref.gguf import read_gguf
        kv = read_gguf(adapter).metadata
        try:
            return int(kv["edgeinf.ei.n_sink"]), int(kv["edgeinf.ei.window"]), int(kv["edgeinf.ei.seg"])
        except KeyError:
            pass
    return 16, 768, 128


def main():
    model = os.environ.get("EVAL_MODEL", os.path.join(ROOT, "models", "edgeinf-default-q8_0.gguf"))
    adapter = os.environ.get("EVAL_ADAPTER", os.path.join(ROOT, "models", "edgeinf-default-adapter.gguf"))
    out_dir = os.environ.get("EVAL_OUT", os.path.join(ROOT, "docs"))
    layout = default_layout(adapter)
    layout = (int(os.environ.get("EVAL_SINK", layout[0])), int(os.environ.get("EVAL_WINDOW", layout[1])),
              int(os.environ.get("EVAL_SEG", layout[2])))
    budget = sum(layout)
    policies = ["full", "streaming"] + (["edgeinfinite"] if os.path.exists(adapter) else [])
    if "edgeinfinite" not in policies:
        print(f"eval-long: no adapter at {adapter}: edgeinfinite skipped", file=sys.stderr)
    info, _ = run(["info", "-m", model])
    ctx = int(re.search(r"ctx_train (\d+)", info.stdout).group(1))
    rnd = random.Random(1234)
    filler_tokens = n_tokens(model, FILLER + " ")
    rel = lambda x: os.path.relpath(x, ROOT)  # noqa: E731  (no machine paths in committed results)
    results = {"model": rel(model), "adapter": rel(adapter) if "edgeinfinite" in policies else None, "layout": layout,
               "kv_budget_tokens": budget, "passkey": [], "perplexity": [], "cost": []}

    # ---------------------------------------------------------------- passkey
    lengths = env_list("EVAL_LENGTHS", [8192, 32768, 131072, 1048576])
    depths = env_list("EVAL_DEPTHS", [0.0, 0.25, 0.5, 0.75, 1.0], float)
    n_keys = keys_per_length(lengths)
    # streaming's passkey and cost runs can stop at a length (EVAL_STREAMING_MAX): beyond its cache it holds the same
    # tokens whatever the length, so longer runs only cost time; the report says where it stopped.
    streaming_max = int(os.environ.get("EVAL_STREAMING_MAX", 0)) or None
    results["streaming_passkey_max_length"] = streaming_max
    with tempfile.TemporaryDirectory() as td:
        for length in lengths:
            for depth in depths:
                for _ in range(n_keys[length]):
                    key = rnd.randrange(10000, 100000)
                    path = os.path.join(td, "p.txt")
                    with open(path, "w", encoding="utf-8") as f:
                        f.write(passkey_prompt(model, length, depth, key, filler_tokens))
                    for pol in policies:
                        if pol == "full" and length > ctx:
                            continue
                        if pol == "streaming" and streaming_max and length > streaming_max:
                            continue
                        r, dt = run(["generate", "-m", model, "-f", path, "-n", "8", "--temp", "0", "--stats",
                                     *policy_args(pol, layout, adapter)])
                        st = json.loads(r.stderr.strip().splitlines()[-1]) if r.returncode == 0 else {}
                        got = re.findall(r"\d{5}", r.stdout)
                        hit = bool(got) and got[0] == str(key)
                        results["passkey"].append({"length": length, "depth": depth, "key": key, "policy": pol,
                                                   "hit": hit, "answer": r.stdout.strip()[:40],
                                                   "tokens": st.get("tokens"), "seconds": round(dt, 2)})
                        print(f"passkey L={length} depth={depth:.2f} {pol}: {'HIT' if hit else 'miss'} "
                              f"({r.stdout.strip()[:20]!r}, {dt:.1f}s)", flush=True)

    # ---------------------------------------------------------------- perplexity
    ppl_lengths = env_list("EVAL_PPL_LENGTHS", [2048, 8192, 32768, 131072])
    ids = corpus_ids(model, "heldout")
    if ids is not None:
        with tempfile.TemporaryDirectory() as td:
            path = os.path.join(td, "doc.txt")
            for length in ppl_lengths:
                if length > len(ids):
                    print(f"ppl: held-out split has {len(ids)} tokens < {length}: skipped", file=sys.stderr)
                    continue
                write_prefix(model, ids, length, path)
                for pol in policies:
                    if pol == "full" and length > ctx:
                        continue
                    pp = perplexity(model, path, policy_args(pol, layout, adapter)
                                    + (["--ctx", str(ctx)] if pol == "full" else []))
                    if pp:
                        results["perplexity"].append({"length": length, "policy": pol, "ppl": pp[0],
                                                      "tokens": pp[1], "seconds": round(pp[2], 1)})
                        print(f"ppl L={length} {pol}: {pp[0]}", flush=True)
    else:
        print("eval-long: models/work/corpus/heldout.jsonl missing (run `make model-corpus`): perplexity skipped",
              file=sys.stderr)

    # ---------------------------------------------------------------- cost curves
    cost_lengths = env_list("EVAL_COST_LENGTHS", [1024, 4096, 16384, 65536, 262144, 1048576])
    with tempfile.TemporaryDirectory() as td:
        for length in cost_lengths:
            path = os.path.join(td, "c.txt")
            with open(path, "w", encoding="utf-8") as f:
                f.write(" ".join([FILLER] * max(1, length // filler_tokens)))
            for pol in policies:
                if pol == "full" and length > ctx:
                    continue
                if pol == "streaming" and streaming_max and length > streaming_max:
                    continue
                r, dt, peak_kb = run_peak(["generate", "-m", model, "-f", path, "-n", "32", "--temp", "0", "--stats",
                                           *policy_args(pol, layout, adapter)])
                if r.returncode:
                    print(f"cost L={length} {pol}: failed: {r.stderr.strip()[-200:]}", file=sys.stderr)
                    continue
                st = json.loads(r.stderr.strip().splitlines()[-1])
                results["cost"].append({"length": length, "policy": pol, "ttft_ms": st["prefill_ms"],
                                        "prefill_tps": st["prefill_tokens"] / (st["prefill_ms"] / 1e3),
                                        "decode_tps": st["decode_tokens"] / (st["decode_ms"] / 1e3),
                                        "kv_bytes": st["kv_bytes"], "memory_bytes": st["memory_bytes"],
                                        "peak_rss_kb": peak_kb})
                print(f"cost L={length} {pol}: ttft {st['prefill_ms'] / 1e3:.1f}s decode "
                      f"{results['cost'][-1]['decode_tps']:.1f} t/s kv+mem {(st['kv_bytes'] + st['memory_bytes']) / 1e6:.2f} MB",
                      flush=True)

    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "eval-long.json"), "w") as f:
        json.dump(results, f, indent=1)
    write_report(results, out_dir)
    return 0


def quality_plot(res, out_dir, lines):
    """eval-long-quality.png: passkey accuracy and perplexity vs length per policy (appended to `lines`)."""
    if not res["passkey"] and not res["perplexity"]:
        return
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(1, 2, figsize=(11, 3.6))
    for pol in ("full", "streaming", "edgeinfinite"):
        pk = [r for r in res["passkey"] if r["policy"] == pol]
        Ls = sorted({r["length"] for r in pk})
        if Ls:
            acc = [100 * sum(r["hit"] for r in pk if r["length"] == L) / sum(1 for r in pk if r["length"] == L)
                   for L in Ls]
            ax[0].plot(Ls, acc, "o-", label=pol)
        pp = sorted((r["length"], r["ppl"]) for r in res["perplexity"] if r["policy"] == pol)
        if pp:
            ax[1].plot([a for a, _ in pp], [b for _, b in pp], "o-", label=pol)
    for a, t in zip(ax, ("passkey accuracy (%)", "held-out perplexity")):
        a.set_xscale("log")
        a.set_xlabel("context tokens")
        a.set_title(t)
        a.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, "eval-long-quality.png"), dpi=110)
    plt.close(fig)
    lines += ["", "![passkey and perplexity vs length](eval-long-quality.png)"]


def write_report(res, out_dir):
    lines = ["# Long-context evaluation", "", f"`make eval-long` — model `{res['model']}`, "
             f"layout sink {res['layout'][0]} + window {res['layout'][1]} + segment {res['layout'][2]} = "
             f"{res['kv_budget_tokens']} KV tokens for every policy; computed by the C engine.", ""]
    pk = res["passkey"]
    if pk:
        lines += ["## Passkey accuracy", "", "| length | policy | " + " | ".join(
            f"depth {d:.0%}" for d in sorted({r['depth'] for r in pk})) + " | all |", "|---|---|" +
            "---|" * (len({r['depth'] for r in pk}) + 1)]
        for L in sorted({r["length"] for r in pk}):
            for pol in ("full", "streaming", "edgeinfinite"):
                rows = [r for r in pk if r["length"] == L and r["policy"] == pol]
                if not rows:
                    continue
                cells = []
                for d in sorted({r["depth"] for r in pk}):
                    rr = [r for r in rows if r["depth"] == d]
                    cells.append(f"{sum(r['hit'] for r in rr)}/{len(rr)}")
                lines.append(f"| {L} | {pol} | " + " | ".join(cells) + f" | {100 * sum(r['hit'] for r in rows) / len(rows):.0f}% |")
        if res.get("streaming_passkey_max_length"):
            lines.append(f"\n`streaming` passkey runs stop at {res['streaming_passkey_max_length']} tokens "
                         f"(EVAL_STREAMING_MAX): past its cache it holds the same {res['kv_budget_tokens']} tokens at "
                         f"any length, so the key is gone at every depth except where it sits in the sinks or the "
                         f"last window.")
        lines.append("")
    if res["perplexity"]:
        lines += ["## Long-document perplexity (held-out split)", "", "| length | policy | tokens | ppl |", "|---|---|---|---|"]
        for r in res["perplexity"]:
            lines.append(f"| {r['length']} | {r['policy']} | {r['tokens']} | {r['ppl']:.3f} |")
        lines.append("")
    if res["cost"]:
        lines += ["## Cost vs context length", "", "| length | policy | TTFT s | prefill tok/s | decode tok/s | "
                  "KV+memory MB | peak RSS MB |", "|---|---|---|---|---|---|---|"]
        for r in res["cost"]:
            rss = f"{r['peak_rss_kb'] / 1024:.1f}" if r.get("peak_rss_kb") else "–"
            lines.append(f"| {r['length']} | {r['policy']} | {r['ttft_ms'] / 1e3:.2f} | {r['prefill_tps']:.0f} | "
                         f"{r['decode_tps']:.1f} | {(r['kv_bytes'] + r['memory_bytes']) / 1e6:.2f} | {rss} |")
        try:
            import matplotlib
            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
            fig, ax = plt.subplots(1, 4, figsize=(17, 3.6))
            for pol in ("full", "streaming", "edgeinfinite"):
                rows = [r for r in res["cost"] if r["policy"] == pol]
                if not rows:
                    continue
                xs = [r["length"] for r in rows]
                ax[0].plot(xs, [r["ttft_ms"] / 1e3 for r in rows], "o-", label=pol)
                ax[1].plot(xs, [r["decode_tps"] for r in rows], "o-", label=pol)
                ax[2].plot(xs, [(r["kv_bytes"] + r["memory_bytes"]) / 1e6 for r in rows], "o-", label=pol)
                ax[3].plot(xs, [(r.get("peak_rss_kb") or float("nan")) / 1024 for r in rows], "o-", label=pol)
            for a, t in zip(ax, ("TTFT (s)", "decode tokens/s", "KV + memory (MB)", "peak RSS of the process (MB)")):
                a.set_xscale("log")
                a.set_xlabel("context tokens")
                a.set_title(t)
                a.legend()
            fig.tight_layout()
            fig.savefig(os.path.join(out_dir, "eval-long-cost.png"), dpi=110)
            lines += ["", "![cost curves](eval-long-cost.png)"]
        except ImportError:
            pass
    quality_plot(res, out_dir, lines)
    with open(os.path.join(out_dir, "eval-long.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {out_dir}/eval-long.md and eval-long.json")


if __name__ == "__main__":
    sys.exit(main())
