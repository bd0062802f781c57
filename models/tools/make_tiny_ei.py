#!/usr/bin/python3
"""Generate the streaming / edgeinfinite parity fixtures in tests/fixtures/tiny-ei (deterministic, no downloads).

    /usr/bin/python3 models/tools/make_tiny_ei.py [OUT_DIR [BASE_DIR]]   (default tests/fixtures/tiny-ei, OUT_DIR/../tiny)

Reuses the tiny base models of tests/fixtures/tiny (tiny-f32.gguf, tiny-q8_0.gguf: not regenerated here; their
sha256 is recorded), writes a random rank-4 adapter (gate ~0.3-0.7 so memory matters), and for a 120-token text
the reference logits after every position, in float64, for the layout n_sink 4 / window 16 / seg 8 (first
eviction at position 28, then one every 8 tokens: 12 compressions):
    f32:  full, streaming, edgeinfinite (routing on)
    q8_0: streaming, edgeinfinite with Q8_0 activations (the engine quantizes the input of every Q8_0/Q4_0 base
          matmul; the adapter's F32 gate and low-rank matmuls take the exact float x̂, unquantized)
plus an 8-token greedy continuation per run. manifest.json describes everything (see `formats` inside it);
each run also has a plain-text <run>.expect.txt for C tests.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # models/ -> edgeinf_ref
sys.path.insert(0, HERE)                   # make_tiny (add_act_q8, _json)

from edgeinf_ref.adapter import EdgeInfAdapter, load_adapter_gguf  # noqa: E402
from edgeinf_ref.attention import EdgeInfinitePolicy, StreamingPolicy  # noqa: E402
from edgeinf_ref.export import load_gguf  # noqa: E402
from make_tiny import _json, add_act_q8  # noqa: E402

SEED = 20250401
N_SINK, WINDOW, SEG = 4, 16, 8
RANK = 4
EPS = 1e-6
N_ROWS = 120
N_CONTINUE = 8
BASE_DIR = os.path.join("..", "tiny")   # relative to the fixture directory
ADAPTER = "tiny-ei-adapter.gguf"
# (run name, base file, ftype, policy, actq8)
RUNS = [
    ("f32-full", "tiny-f32.gguf", "f32", "full", False),
    ("f32-streaming", "tiny-f32.gguf", "f32", "streaming", False),
    ("f32-edgeinfinite", "tiny-f32.gguf", "f32", "edgeinfinite", False),
    ("q8_0-streaming.actq8", "tiny-q8_0.gguf", "q8_0", "streaming", True),
    ("q8_0-edgeinfinite.actq8", "tiny-q8_0.gguf", "q8_0", "edgeinfinite", True),
]


def make_adapter(cfg) -> EdgeInfAdapter:
    """Random adapter, every tensor non-trivial: gate w ~ N(0, 0.5/sqrt(dim)) (w·x̂ has std ~0.5 on RMS-normed
    inputs), b ~ U(-0.3, 0.3): gates mostly in 0.3-0.7; A ~ N(0, 1/sqrt(dim)), B ~ N(0, 0.25) so the low-rank terms
    are about half the size of the projections they are added to."""
    rng = np.random.default_rng(SEED)
    ad = EdgeInfAdapter.for_model(cfg, rank=RANK, n_sink=N_SINK, window=WINDOW, seg=SEG, eps=EPS)
    with torch.no_grad():
        for name, p in ad.named_parameters():
            if name == "gate_w":
                a = rng.normal(0.0, 0.5 / np.sqrt(cfg.dim), size=p.shape)
            elif name == "gate_b":
                a = rng.uniform(-0.3, 0.3, size=p.shape)
            elif name.endswith("_a"):
                a = rng.normal(0.0, 1.0 / np.sqrt(cfg.dim), size=p.shape)
            else:
                a = rng.normal(0.0, 0.25, size=p.shape)
            p.copy_(torch.from_numpy(a.astype(np.float32)))  # float32: exactly what the GGUF holds
    return ad


def policy_for(name: str, adapter):
    if name == "full":
        return None
    if name == "streaming":
        return StreamingPolicy(N_SINK, WINDOW, SEG)
    return EdgeInfinitePolicy(N_SINK, WINDOW, SEG, adapter, routing=True)


def load_base(path: str, dtype, act_q8: bool):
    m = load_gguf(path, dtype=dtype)[0]
    return add_act_q8(m) if act_q8 else m


@torch.no_grad()
def run_logits(model, seq, policy):
    """Logits after every position of seq through the incremental path (chunks of 7), cross-checked against
    one-token-at-a-time and the batched path (must agree to 1e-9 in float64). Returns (logits, state)."""
    t = torch.tensor([seq])
    batched = model(t, policy=policy)
    results = []
    for chunk in (7, 1):
        st = model.new_state(policy, 1)
        outs = [model(t[:, s:s + chunk], state=st)[0] for s in range(0, len(seq), chunk)]
        results.append((torch.cat(outs, 0), st))
    for lg, _ in results:
        err = float((lg - batched[0]).abs().max())
        if err > 1e-9:
            raise AssertionError(f"incremental vs batched logits differ by {err}")
    return results[0]


@torch.no_grad()
def greedy_after(model, seq, policy, n):
    """Greedy continuation of n tokens after consuming all of seq (incremental); margins of each decode step."""
    st = model.new_state(policy, 1)
    last = model(torch.tensor([seq]), state=st)[0, -1]
    out, margins = [], []
    for i in range(n):
        top2 = torch.topk(last, 2).values
        margins.append(round(float(top2[0] - top2[1]), 5))
        nxt = int(torch.argmax(last))
        out.append(nxt)
        if i < n - 1:
            last = model(torch.tensor([[nxt]]), state=st)[0, -1]
    return out, margins, st


def _sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _margins(logits):
    top2 = torch.topk(logits, 2, dim=-1).values
    return [round(float(m), 5) for m in (top2[:, 0] - top2[:, 1])]


FORMATS = {
    "tiny-ei-adapter.gguf": "adapter GGUF of docs/edgeinfinite.md (general.architecture=edgeinf-adapter), F32, "
                            "rank 4, for ../tiny/tiny-*.gguf; its n_sink/window/seg/eps are the layout used here",
    "*.logits.f32": "raw little-endian float32, row-major, no header, shape [n_rows, vocab]. Row i = next-token "
                    "logits after consuming sequence[0..i] with the run's policy, computed in float64 on the "
                    "DEQUANTIZED base weights (memory M, z in float64 too), then rounded to float32",
    "*.actq8.logits.f32": "same, but the input of every base-model weight matmul (attn_q/k/v/output, ffn_*, the "
                          "tied output on token_embd) is quantized to Q8_0 with ggml's reference rounding first; the "
                          "adapter's F32 matmuls (gate, low-rank A and B) take exact inputs",
    "greedy": "argmax continuation (n_continue tokens) after consuming the whole sequence with the run's policy "
              "(decoded one token at a time); greedy_margins = top1 - top2 at each of those steps",
    "stats_after_sequence": "what the session holds after the sequence: kv_tokens (sink + cached), compressions "
                            "(segments folded into memory), evictions (segments that left the cache)",
    "measured": "error scales measured by the generator: the same run in float32 (batched path), max and mean "
                "|f32 - f64| over the logits (with actq8, an activation on a rounding boundary can land one quantum "
                "apart, hence max >> mean)",
    "*.expect.txt": "plain-text twin of one run for C tests: `key v1 v2 ...` per line ('#' comment lines): gguf "
                    "(path relative to this directory), ftype, actq8, policy, adapter (file or none), n_sink, "
                    "window, seg, routing, vocab, n_rows, sequence, logits, margins, greedy, greedy_margins, "
                    "kv_tokens, compressions",
}


def main(out_dir: str, base_dir: str = None):
    """Write the fixtures into out_dir, reading the tiny base models from base_dir (default out_dir/../tiny; the
    manifest always names them ../tiny/..., where they live next to the committed fixtures)."""
    os.makedirs(out_dir, exist_ok=True)
    torch.set_num_threads(1)
    import sentencepiece as spm

    base_dir = base_dir or os.path.normpath(os.path.join(out_dir, BASE_DIR))
    tok = spm.SentencePieceProcessor(model_file=os.path.join(base_dir, "tokenizer.model"))
    with open(os.path.join(base_dir, "corpus.txt"), encoding="utf-8") as f:
        text = f.read()
    seq = ([tok.bos_id()] + tok.encode(text))[:N_ROWS]
    if len(seq) != N_ROWS:
        raise AssertionError("tiny corpus too short")

    f32_model, cfg, _ = load_gguf(os.path.join(base_dir, "tiny-f32.gguf"), dtype=torch.float64)
    ad = make_adapter(cfg)
    apath = os.path.join(out_dir, ADAPTER)
    ad.save_gguf(apath, name="edgeinf-tiny-ei-adapter")
    ad64 = load_adapter_gguf(apath, cfg).double()   # exactly the file's values
    ad32 = load_adapter_gguf(apath, cfg)

    with torch.no_grad():
        # gate values the memory-mixing tokens actually see (layer input x̂ of the f32 model, edgeinfinite run)
        gates = []
        hooks = [blk.attention_norm.register_forward_hook(
            lambda mod, inp, out, l=i: gates.append(ad64.gate(l, out)[..., N_SINK + WINDOW + SEG:]))
            for i, blk in enumerate(f32_model.layers)]
        f32_model(torch.tensor([seq]))
        for h in hooks:
            h.remove()
        gall = torch.cat([g.reshape(-1) for g in gates])

    manifest = {
        "format_version": 1,
        "generator": "models/tools/make_tiny_ei.py",
        "seed": SEED,
        "formats": FORMATS,
        "layout": {"n_sink": N_SINK, "window": WINDOW, "seg": SEG, "eps": EPS, "budget": N_SINK + WINDOW + SEG,
                   "first_eviction_at": N_SINK + WINDOW + SEG,
                   "evictions_at": list(range(N_SINK + WINDOW + SEG, N_ROWS, SEG))},
        "base_models": {n: {"path": BASE_DIR + "/" + n, "sha256": _sha256(os.path.join(base_dir, n))}
                        for n in ("tiny-f32.gguf", "tiny-q8_0.gguf")},
        "adapter": {"file": ADAPTER, "sha256": _sha256(apath), "rank": RANK, "n_params": ad.n_params(),
                    "gate_after_budget": {"min": round(float(gall.min()), 4), "max": round(float(gall.max()), 4),
                                          "mean": round(float(gall.mean()), 4)}},
        "sequence_source": "BOS + the first tokens of ../tiny/corpus.txt encoded with ../tiny/tokenizer.model",
        "vocab": cfg.vocab_size,
        "n_rows": N_ROWS,
        "n_continue": N_CONTINUE,
        "sequence": seq,
        "runs": {},
    }
    logits_of = {}
    for run, base, ftype, pol_name, actq8 in RUNS:
        gpath = os.path.join(base_dir, base)
        m64 = load_base(gpath, torch.float64, actq8)
        pol = policy_for(pol_name, ad64)
        lg, st = run_logits(m64, seq, pol)
        greedy, gmargins, _ = greedy_after(m64, seq, pol, N_CONTINUE)
        m32 = load_base(gpath, torch.float32, actq8)
        with torch.no_grad():
            l32 = m32(torch.tensor([seq]), policy=policy_for(pol_name, ad32))[0].to(torch.float64)
        logits_of[run] = lg
        fname = run + ".logits.f32"
        lg.to(torch.float32).numpy().astype("<f4").tofile(os.path.join(out_dir, fname))
        L0 = st.layers[0]
        e = {
            "gguf": BASE_DIR + "/" + base, "ftype": ftype, "actq8": actq8, "policy": pol_name,
            "adapter": ADAPTER if pol_name == "edgeinfinite" else None,
            "routing": pol_name == "edgeinfinite",
            "logits_file": fname, "logits_shape": [N_ROWS, cfg.vocab_size],
            "margins": _margins(lg), "greedy": greedy, "greedy_margins": gmargins,
            "stats_after_sequence": {"kv_tokens": len(L0), "compressions": getattr(L0, "compressions", 0),
                                     "evictions": getattr(L0, "evictions", 0)},
            "measured": {"logit_std": round(float(lg.std()), 4),
                         "f32_vs_f64_max_abs": float((l32 - lg).abs().max()),
                         "f32_vs_f64_mean_abs": float((l32 - lg).abs().mean())},
        }
        manifest["runs"][run] = e
    # facts the fixtures must show (else they would not test what they claim)
    b = N_SINK + WINDOW + SEG
    for a, c in (("f32-streaming", "f32-full"), ("f32-edgeinfinite", "f32-full"),
                 ("q8_0-edgeinfinite.actq8", "q8_0-streaming.actq8")):
        below = float((logits_of[a][:b] - logits_of[c][:b]).abs().max())
        above = float((logits_of[a][b:] - logits_of[c][b:]).abs().max())
        if below > 1e-12 or above < 0.1:
            raise AssertionError(f"{a} vs {c}: below budget {below}, after {above}")
        manifest.setdefault("checks", {})[f"{a} vs {c}"] = {"max_abs_below_budget": below,
                                                             "max_abs_after_budget": round(above, 4)}
    if not 0.25 < manifest["adapter"]["gate_after_budget"]["mean"] < 0.75:
        raise AssertionError(f"gate out of range: {manifest['adapter']['gate_after_budget']}")
    with open(os.path.join(out_dir, "manifest.json"), "w", encoding="utf-8") as f:
        f.write(_json(manifest) + "\n")
    for run, e in manifest["runs"].items():
        write_expect(os.path.join(out_dir, run + ".expect.txt"), e, manifest)
    for run, e in manifest["runs"].items():
        print(f"{run}: std {e['measured']['logit_std']}, f32 vs f64 {e['measured']['f32_vs_f64_max_abs']:.2e}, "
              f"{e['stats_after_sequence']}")


def write_expect(path: str, e: dict, man: dict):
    lay = man["layout"]
    lines = [
        "# edgeinf tiny-ei fixture (models/tools/make_tiny_ei.py); format: key value... per line, see manifest.json",
        f"gguf {e['gguf']}",
        f"ftype {e['ftype']}",
        f"actq8 {int(e['actq8'])}",
        f"policy {e['policy']}",
        f"adapter {e['adapter'] or 'none'}",
        f"n_sink {lay['n_sink']}",
        f"window {lay['window']}",
        f"seg {lay['seg']}",
        f"routing {int(e['routing'])}",
        f"vocab {man['vocab']}",
        f"n_rows {man['n_rows']}",
        "sequence " + " ".join(map(str, man["sequence"])),
        f"logits {e['logits_file']}",
        "margins " + " ".join(f"{m:.5f}" for m in e["margins"]),
        "greedy " + " ".join(map(str, e["greedy"])),
        "greedy_margins " + " ".join(f"{m:.5f}" for m in e["greedy_margins"]),
        f"kv_tokens {e['stats_after_sequence']['kv_tokens']}",
        f"compressions {e['stats_after_sequence']['compressions']}",
    ]
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.join("tests", "fixtures", "tiny-ei"),
         sys.argv[2] if len(sys.argv) > 2 else None)
