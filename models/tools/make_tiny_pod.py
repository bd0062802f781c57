#!/usr/bin/python3
"""Generate the pod / edgeinfinite+pod parity fixtures in tests/fixtures/tiny-pod (deterministic, no downloads).

    /usr/bin/python3 models/tools/make_tiny_pod.py [OUT_DIR [BASE_DIR [EI_DIR]]]
        (defaults tests/fixtures/tiny-pod, OUT_DIR/../tiny, OUT_DIR/../tiny-ei)

Reuses the tiny f32 base model of tests/fixtures/tiny (2 layers, 4 heads, 2 KV heads) and the random rank-4
EdgeInfinite adapter of tests/fixtures/tiny-ei (their sha256 are recorded). Both layers form one block ([[0, 1]]:
layer 0 is the anchor, layer 1 shares), and for a 100-token text the reference logits after every position, in
float64, are written for
    pod               n_sink 4, n_recent 16 (distant tokens from position 20 on), share=scores and share=keys;
    edgeinfinite+pod  the tiny-ei layout n_sink 4 / window 16 / seg 8 (first eviction at 28, then every 8: 9
                      compressions) with n_recent 8, share=scores and share=keys;
plus an 8-token greedy continuation and what the session holds afterwards. Each run's adapter GGUF (docs/pod.md,
"Adapter GGUF") is written next to it. manifest.json describes everything (see `formats` inside it); each run also
has a plain-text <run>.expect.txt for C tests.
"""
from __future__ import annotations

import hashlib
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # models/ -> edgeinf_ref
sys.path.insert(0, HERE)                   # make_tiny (_json)

from edgeinf_ref.adapter import load_adapter_gguf  # noqa: E402
from edgeinf_ref.export import load_gguf  # noqa: E402
from edgeinf_ref.pod import PodConfig, PodPolicy, kv_bytes_held, load_pod_gguf  # noqa: E402
from make_tiny import _json  # noqa: E402

BLOCK_STARTS = [0]          # one block: layers 0 and 1
N_SINK, N_RECENT = 4, 16    # pod
WINDOW, SEG, EI_N_RECENT = 16, 8, 8   # edgeinfinite+pod (n_sink 4 as above; tiny-ei's layout)
DELTA = 0.5                 # provenance only: the blocks here are chosen, not calibrated
N_ROWS = 100
N_CONTINUE = 8
BASE_DIR = os.path.join("..", "tiny")
EI_DIR = os.path.join("..", "tiny-ei")
EI_ADAPTER = "tiny-ei-adapter.gguf"
# (run name, policy, share, adapter file)
RUNS = [
    ("f32-pod-scores", "pod", "scores", "tiny-pod-scores.gguf"),
    ("f32-pod-keys", "pod", "keys", "tiny-pod-keys.gguf"),
    ("f32-eipod-scores", "edgeinfinite+pod", "scores", "tiny-eipod-scores.gguf"),
    ("f32-eipod-keys", "edgeinfinite+pod", "keys", "tiny-eipod-keys.gguf"),
]

FORMATS = {
    "tiny-pod-*.gguf": "kind 'pod' adapter GGUF of docs/pod.md for ../tiny/tiny-f32.gguf (no tensors): block_starts "
                       "[0] (layers 0-1 one block), n_sink 4, n_recent 16, share as named",
    "tiny-eipod-*.gguf": "kind 'edgeinfinite+pod' adapter GGUF: every key and tensor of "
                         "../tiny-ei/tiny-ei-adapter.gguf (n_sink 4, window 16, seg 8, rank 4) plus the pod keys: block_starts [0], n_recent 8, share "
                         "as named",
    "*.logits.f32": "raw little-endian float32, row-major, no header, shape [n_rows, vocab]. Row i = next-token logits "
                    "after consuming sequence[0..i] with the run's policy and adapter, computed in float64 on the f32 "
                    "base weights (memory M, z in float64 too), then rounded to float32",
    "greedy": "argmax continuation (n_continue tokens) after consuming the whole sequence (decoded one token at a "
              "time); greedy_margins = top1 - top2 at each of those steps",
    "stats_after_sequence": "what the session holds after the sequence: kv_tokens (tokens whose values are cached), "
                            "keys_per_layer (keys each layer holds: anchors all cached tokens, the other layer only "
                            "min(kv_tokens, n_sink + n_recent - 1)), kv_bytes_held (docs/pod.md formula with float32 "
                            "K/V), compressions",
    "measured": "error scales measured by the generator: the same run in float32 (batched path), max and mean "
                "|f32 - f64| over the logits",
    "checks": "facts the generator asserted: incremental (chunks of 7 and of 1) == batched to 1e-9; pod == full "
              "before the first distant token and not after; edgeinfinite+pod == pod with its n_recent before the "
              "first eviction and not after; share=scores != share=keys",
    "*.expect.txt": "plain-text twin of one run for C tests: `key v1 v2 ...` per line ('#' comment lines): gguf "
                    "(path relative to this directory), ftype, policy, adapter, share, block_starts, n_sink, n_recent, "
                    "window, seg (0 for pod), vocab, n_rows, sequence, logits, margins, greedy, greedy_margins, "
                    "kv_tokens, keys_per_layer, kv_bytes_held, compressions",
}


def _sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _margins(logits):
    top2 = torch.topk(logits, 2, dim=-1).values
    return [round(float(m), 5) for m in (top2[:, 0] - top2[:, 1])]


@torch.no_grad()
def run_logits(model, seq, policy):
    """Logits after every position (incremental, chunks of 7), cross-checked against one token at a time and the
    batched path (1e-9 in float64). Returns (logits, state after the sequence)."""
    t = torch.tensor([seq])
    batched = model(t, policy=policy)[0]
    results = []
    for chunk in (7, 1):
        st = model.new_state(policy, 1)
        results.append((torch.cat([model(t[:, s:s + chunk], state=st)[0] for s in range(0, len(seq), chunk)]), st))
    for lg, _ in results:
        err = float((lg - batched).abs().max())
        if err > 1e-9:
            raise AssertionError(f"incremental vs batched logits differ by {err}")
    return results[0]


@torch.no_grad()
def greedy_after(model, seq, policy, n):
    st = model.new_state(policy, 1)
    last = model(torch.tensor([seq]), state=st)[0, -1]
    out, margins = [], []
    for i in range(n):
        top2 = torch.topk(last, 2).values
        margins.append(round(float(top2[0] - top2[1]), 5))
        out.append(int(torch.argmax(last)))
        if i < n - 1:
            last = model(torch.tensor([[out[-1]]]), state=st)[0, -1]
    return out, margins


def main(out_dir: str, base_dir: str = None, ei_dir: str = None):
    """Write the fixtures into out_dir, reading the tiny base model from base_dir and the EdgeInfinite adapter from
    ei_dir (defaults out_dir/../tiny and out_dir/../tiny-ei; the manifest always names them ../tiny/...,
    ../tiny-ei/...)."""
    os.makedirs(out_dir, exist_ok=True)
    torch.set_num_threads(1)
    import sentencepiece as spm

    base_dir = base_dir or os.path.normpath(os.path.join(out_dir, BASE_DIR))
    ei_dir = ei_dir or os.path.normpath(os.path.join(out_dir, EI_DIR))
    tok = spm.SentencePieceProcessor(model_file=os.path.join(base_dir, "tokenizer.model"))
    with open(os.path.join(base_dir, "corpus.txt"), encoding="utf-8") as f:
        seq = ([tok.bos_id()] + tok.encode(f.read()))[:N_ROWS]
    if len(seq) != N_ROWS:
        raise AssertionError("tiny corpus too short")
    gpath = os.path.join(base_dir, "tiny-f32.gguf")
    m64, cfg, _ = load_gguf(gpath, dtype=torch.float64)
    m32 = load_gguf(gpath, dtype=torch.float32)[0]
    ei32 = load_adapter_gguf(os.path.join(ei_dir, EI_ADAPTER), cfg)
    if (ei32.n_sink, ei32.window, ei32.seg) != (N_SINK, WINDOW, SEG):
        raise AssertionError("tiny-ei layout changed")
    kv_dim = cfg.n_kv_heads * cfg.head_dim

    manifest = {
        "format_version": 1,
        "generator": "models/tools/make_tiny_pod.py",
        "contract": "docs/pod.md",
        "formats": FORMATS,
        "blocks": [[0, 1]], "block_starts": BLOCK_STARTS,
        "pod": {"n_sink": N_SINK, "n_recent": N_RECENT, "first_distant_at": N_SINK + N_RECENT},
        "edgeinfinite+pod": {"n_sink": N_SINK, "window": WINDOW, "seg": SEG, "n_recent": EI_N_RECENT,
                             "budget": N_SINK + WINDOW + SEG, "first_distant_at": N_SINK + EI_N_RECENT,
                             "evictions_at": list(range(N_SINK + WINDOW + SEG, N_ROWS, SEG))},
        "base_model": {"path": BASE_DIR + "/tiny-f32.gguf", "sha256": _sha256(gpath)},
        "ei_adapter": {"path": EI_DIR + "/" + EI_ADAPTER, "sha256": _sha256(os.path.join(ei_dir, EI_ADAPTER))},
        "sequence_source": "BOS + the first tokens of ../tiny/corpus.txt encoded with ../tiny/tokenizer.model",
        "vocab": cfg.vocab_size, "n_rows": N_ROWS, "n_continue": N_CONTINUE, "sequence": seq,
        "runs": {}, "checks": {},
    }
    logits_of = {}
    for run, pol_name, share, afile in RUNS:
        apath = os.path.join(out_dir, afile)
        n_recent = N_RECENT if pol_name == "pod" else EI_N_RECENT
        pc = PodConfig.for_model(cfg, BLOCK_STARTS, N_SINK, n_recent, share, DELTA)
        pc.save_gguf(apath, ei_adapter=ei32 if pol_name != "pod" else None, name="edgeinf-tiny-" + run[4:])
        pc_back, ei_back = load_pod_gguf(apath, cfg)   # the policy is built from what the file holds
        if pol_name == "pod":
            pol64 = pol32 = pc_back.policy()
        else:
            pol64 = pc_back.ei_pod_policy(ei_back.double())
            pol32 = pc_back.ei_pod_policy(ei_back)
        lg, st = run_logits(m64, seq, pol64)
        greedy, gmargins = greedy_after(m64, seq, pol64, N_CONTINUE)
        with torch.no_grad():
            l32 = m32(torch.tensor([seq]), policy=pol32)[0].to(torch.float64)
        logits_of[run] = lg
        fname = run + ".logits.f32"
        lg.to(torch.float32).numpy().astype("<f4").tofile(os.path.join(out_dir, fname))
        kv_tokens = len(st.layers[0])
        keys = [s.n_keys for s in st.layers]
        held = kv_bytes_held(kv_tokens, cfg.n_layers, len(BLOCK_STARTS), kv_dim, N_SINK, n_recent)
        if sum(s.nbytes() for s in st.layers) != 2 * held:   # the float64 caches hold twice the float32 bytes
            raise AssertionError(f"{run}: KV bytes held differ from the formula")
        manifest["runs"][run] = {
            "gguf": BASE_DIR + "/tiny-f32.gguf", "ftype": "f32", "policy": pol_name, "share": share,
            "adapter": afile, "adapter_sha256": _sha256(apath), "n_recent": n_recent,
            "logits_file": fname, "logits_shape": [N_ROWS, cfg.vocab_size],
            "margins": _margins(lg), "greedy": greedy, "greedy_margins": gmargins,
            "stats_after_sequence": {"kv_tokens": kv_tokens, "keys_per_layer": keys, "kv_bytes_held": held,
                                     "compressions": getattr(st.layers[0], "compressions", 0)},
            "measured": {"logit_std": round(float(lg.std()), 4),
                         "f32_vs_f64_max_abs": float((l32 - lg).abs().max()),
                         "f32_vs_f64_mean_abs": float((l32 - lg).abs().mean())},
        }

    # facts the fixtures must show (else they would not test what they claim)
    chk = manifest["checks"]
    with torch.no_grad():
        t = torch.tensor([seq])
        full = m64(t)[0]
        for share in ("scores", "keys"):
            d0 = N_SINK + N_RECENT
            lg = logits_of[f"f32-pod-{share}"]
            below, above = float((lg[:d0] - full[:d0]).abs().max()), float((lg[d0:] - full[d0:]).abs().max())
            if below > 1e-12 or above < 0.1:
                raise AssertionError(f"pod {share} vs full: before {below}, after {above}")
            chk[f"f32-pod-{share} vs full"] = {"max_abs_before_first_distant": below,
                                               "max_abs_after": round(above, 4)}
            b = N_SINK + WINDOW + SEG
            pod8 = m64(t, policy=PodPolicy([[0, 1]], N_SINK, EI_N_RECENT, share))[0]
            lg = logits_of[f"f32-eipod-{share}"]
            below, above = float((lg[:b] - pod8[:b]).abs().max()), float((lg[b:] - pod8[b:]).abs().max())
            if below > 1e-12 or above < 0.1:
                raise AssertionError(f"edgeinfinite+pod {share} vs pod: before {below}, after {above}")
            chk[f"f32-eipod-{share} vs pod(n_recent {EI_N_RECENT})"] = {"max_abs_before_first_eviction": below,
                                                                       "max_abs_after": round(above, 4)}
        for kind in ("pod", "eipod"):
            diff = float((logits_of[f"f32-{kind}-scores"] - logits_of[f"f32-{kind}-keys"]).abs().max())
            if diff < 0.1:
                raise AssertionError(f"{kind}: scores and keys agree ({diff})")
            chk[f"f32-{kind}-scores vs f32-{kind}-keys"] = {"max_abs": round(diff, 4)}
    with open(os.path.join(out_dir, "manifest.json"), "w", encoding="utf-8") as f:
        f.write(_json(manifest) + "\n")
    for run, e in manifest["runs"].items():
        write_expect(os.path.join(out_dir, run + ".expect.txt"), e, manifest)
    for run, e in manifest["runs"].items():
        print(f"{run}: std {e['measured']['logit_std']}, f32 vs f64 {e['measured']['f32_vs_f64_max_abs']:.2e}, "
              f"{e['stats_after_sequence']}")


def write_expect(path: str, e: dict, man: dict):
    eipod = e["policy"] == "edgeinfinite+pod"
    lay = man["edgeinfinite+pod"]
    s = e["stats_after_sequence"]
    lines = [
        "# edgeinf tiny-pod fixture (models/tools/make_tiny_pod.py, docs/pod.md); format: key value... per line, "
        "see manifest.json",
        f"gguf {e['gguf']}",
        f"ftype {e['ftype']}",
        f"policy {e['policy']}",
        f"adapter {e['adapter']}",
        f"share {e['share']}",
        "block_starts " + " ".join(map(str, man["block_starts"])),
        f"n_sink {man['pod']['n_sink']}",
        f"n_recent {e['n_recent']}",
        f"window {lay['window'] if eipod else 0}",
        f"seg {lay['seg'] if eipod else 0}",
        f"vocab {man['vocab']}",
        f"n_rows {man['n_rows']}",
        "sequence " + " ".join(map(str, man["sequence"])),
        f"logits {e['logits_file']}",
        "margins " + " ".join(f"{m:.5f}" for m in e["margins"]),
        "greedy " + " ".join(map(str, e["greedy"])),
        "greedy_margins " + " ".join(f"{m:.5f}" for m in e["greedy_margins"]),
        f"kv_tokens {s['kv_tokens']}",
        "keys_per_layer " + " ".join(map(str, s["keys_per_layer"])),
        f"kv_bytes_held {s['kv_bytes_held']}",
        f"compressions {s['compressions']}",
    ]
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.join("tests", "fixtures", "tiny-pod"),
         sys.argv[2] if len(sys.argv) > 2 else None, sys.argv[3] if len(sys.argv) > 3 else None)
