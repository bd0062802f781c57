#!/usr/bin/python3
"""Generate the tiny-model parity fixtures in tests/fixtures/tiny (deterministic: fixed seeds, no downloads).

    /usr/bin/python3 models/tools/make_tiny.py [OUT_DIR]      (default tests/fixtures/tiny)

Steps: write a small varied text (corpus.txt) -> train a sentencepiece BPE tokenizer on it (tokenizer.model,
byte fallback, identity normalisation) -> build random-weight tiny Llamas -> export GGUFs (f32, f16, q8_0,
q4_0, plus an untied f16 one) -> for each file, re-read it, run the reference in float64 on the DEQUANTIZED
weights, and write the logits after every position of prompt + greedy continuation, and the greedy tokens.
manifest.json describes every file (see the `formats` entry inside it).
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import sys
import tempfile

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # models/ -> import edgeinf_ref

from edgeinf_ref import quant  # noqa: E402
from edgeinf_ref.export import export_gguf, load_gguf  # noqa: E402
from edgeinf_ref.llama import Llama, LlamaConfig  # noqa: E402

SEED = 20250322
VOCAB = 384
N_CONTINUE = 32
CFG = dict(vocab_size=VOCAB, dim=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=96, max_seq_len=256,
           rope_theta=10000.0, norm_eps=1e-5)
PROMPT_TEXT = 'The robot said: "2 + 3 = 5" and walked to the café 🙂'  # 41 ids with BOS, byte fallbacks
# (file name, ftype, tied)
VARIANTS = [
    ("tiny-f32.gguf", "f32", True),
    ("tiny-f16.gguf", "f16", True),
    ("tiny-q8_0.gguf", "q8_0", True),
    ("tiny-q4_0.gguf", "q4_0", True),
    ("tiny-untied-f16.gguf", "f16", False),
]

# ----------------------------------------------------------------------------------------------------------
# Corpus and tokenizer
# ----------------------------------------------------------------------------------------------------------

_SUBJ = ["the robot", "a small cat", "the old man", "my sister", "the teacher", "a curious child", "the river",
         "the engine", "our neighbour", "the little bird", "a tired dog", "the captain"]
_VERB = ["walked to", "looked at", "found", "remembered", "painted", "followed", "carried", "opened", "heard",
         "counted", "built", "wanted"]
_OBJ = ["the green door", "a quiet house", "the bright morning", "an old map", "the market", "three apples",
        "the long road", "a wooden box", "the blue sea", "the window", "a strange letter", "the garden"]
_TAIL = ["before the rain came", "and smiled", "in the evening", "with great care", "for a long time",
         "near the bridge", "without a word", "after dinner", "again and again", "by the river"]
_FIXED = [
    "Once upon a time there was a little robot who loved to read.",
    "The café served naïve coffee to tourists from Zürich and Kraków.",
    "def add(a, b):\n    return a + b  # simple code",
    "for (int i = 0; i < n; i++) { sum += x[i]; }",
    "Numbers: 0 1 2 3 4 5 6 7 8 9 10 42 100 2025 3.14159",
    "Emoji and symbols are rare here: 🙂 ★ → ∞ ©.",
    "日本語の文も少しあります。",
    "Question: what is 2 + 3? Answer: 5.",
    "User: hello there!\nAssistant: Hello! How can I help you today?",
    "    indented line with    several   spaces\tand a tab.",
]


def make_corpus(seed: int = SEED) -> str:
    """~10 KB of simple, varied text: templated sentences plus fixed lines (unicode, code, digits, spaces)."""
    rnd = random.Random(seed)
    lines = list(_FIXED)
    for _ in range(160):
        s = f"{rnd.choice(_SUBJ)} {rnd.choice(_VERB)} {rnd.choice(_OBJ)} {rnd.choice(_TAIL)}."
        lines.append(s[0].upper() + s[1:])
    rnd.shuffle(lines)
    return "\n".join(lines) + "\n"


def train_tokenizer(corpus_path: str, out_model: str):
    """BPE, vocab VOCAB, byte fallback, identity normalisation, single-threaded (deterministic).

    The .model records its input path and prefix, so training runs in a scratch directory under fixed relative
    names: the output bytes then do not depend on where the fixtures are generated."""
    import shutil
    import sentencepiece as spm

    cwd = os.getcwd()
    with tempfile.TemporaryDirectory() as td:
        shutil.copyfile(corpus_path, os.path.join(td, "corpus.txt"))
        os.chdir(td)
        try:
            spm.SentencePieceTrainer.train(
                input="corpus.txt", model_prefix="tokenizer", vocab_size=VOCAB, model_type="bpe",
                byte_fallback=True, normalization_rule_name="identity", character_coverage=0.999,
                num_threads=1, split_digits=True, minloglevel=2)
        finally:
            os.chdir(cwd)
        shutil.copyfile(os.path.join(td, "tokenizer.model"), out_model)


# ----------------------------------------------------------------------------------------------------------
# Model
# ----------------------------------------------------------------------------------------------------------

def build_model(cfg: LlamaConfig, seed: int) -> Llama:
    """Random weights scaled for lively (non-degenerate) logits: unit-ish activations, random norm weights so
    that forgetting them shows, embeddings large enough that logits span several units."""
    rng = np.random.default_rng(seed)
    model = Llama(cfg)
    sd = {}
    for name, p in model.state_dict().items():
        if p.dim() == 1:
            a = rng.uniform(0.6, 1.4, size=p.shape)
        elif name in ("tok_embeddings.weight", "output.weight"):
            a = rng.normal(0.0, 0.3, size=p.shape)
        else:
            fan_in = p.shape[1]
            a = rng.normal(0.0, 1.0 / np.sqrt(fan_in), size=p.shape)
            if "wo" in name or "w2" in name:
                a *= 4.0  # blocks outweigh the token's own embedding, else greedy just repeats it (tied)
        sd[name] = torch.from_numpy(a.astype(np.float32))
    model.load_state_dict(sd)
    return model.eval()


# ----------------------------------------------------------------------------------------------------------
# Reference outputs
# ----------------------------------------------------------------------------------------------------------

def add_act_q8(model):
    """Emulate the engine's on-the-fly Q8_0 quantisation of the input of every weight matmul (what ggml does for
    Q8_0/Q4_0 weights): inputs are rounded to float32, quantized with ggml's reference Q8_0 and dequantized."""
    def q8(x):
        xq = quant.dequantize_q8_0(quant.quantize_q8_0(x.detach().to(torch.float32).cpu().numpy()), x.numel())
        return torch.from_numpy(xq.reshape(x.shape)).to(x.dtype)

    for m in model.modules():
        if isinstance(m, torch.nn.Linear):
            m.register_forward_pre_hook(lambda _m, inp: (q8(inp[0]),))
    orig = model.logits_from_hidden
    model.logits_from_hidden = lambda h: orig(q8(h))  # covers the tied output (F.linear on token_embd)
    return model


def load(path: str, dtype, act_q8: bool):
    model = load_gguf(path, dtype=dtype)[0]
    return add_act_q8(model) if act_q8 else model


@torch.no_grad()
def greedy_and_logits(path: str, prompt_ids, n_new: int, act_q8: bool = False):
    """Greedy continuation and the logits after every position of prompt + greedy[:-1], in float64 on the
    dequantized weights, through the incremental path (prefill in chunks of 7, then one token at a time),
    cross-checked against the batched path."""
    model = load(path, torch.float64, act_q8)
    greedy, logits = model.generate_greedy(list(prompt_ids), n_new, chunk=7)
    batched = model(torch.tensor([list(prompt_ids) + greedy[:-1]]))[0]
    err = (batched - logits).abs().max().item()
    if err > 1e-9:
        raise AssertionError(f"{path}: incremental vs batched logits differ by {err}")
    return greedy, logits


@torch.no_grad()
def teacher_forced(path: str, seq, dtype, act_q8: bool = False) -> torch.Tensor:
    return load(path, dtype, act_q8)(torch.tensor([list(seq)]))[0].to(torch.float64)


def _sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _margins(logits):
    top2 = torch.topk(logits, 2, dim=-1).values
    return [round(float(m), 5) for m in (top2[:, 0] - top2[:, 1])]


def _write_logits(out_dir, name, logits):
    arr = logits.to(torch.float32).numpy().astype("<f4")
    arr.tofile(os.path.join(out_dir, name))
    return list(arr.shape)


def model_entry(out_dir, fname, ftype, tied, prompt_ids):
    """Reference outputs of one exported GGUF (see the manifest's `formats`)."""
    gpath = os.path.join(out_dir, fname)
    stem = fname[:-5]
    greedy, logits = greedy_and_logits(gpath, prompt_ids, N_CONTINUE)
    if len(set(greedy)) < 8:
        raise AssertionError(f"{fname}: degenerate greedy continuation {greedy}")
    seq = prompt_ids + greedy[:-1]
    l32 = teacher_forced(gpath, seq, torch.float32)
    e = {
        "ftype": ftype, "tied": tied, "bytes": os.path.getsize(gpath), "sha256": _sha256(gpath),
        "sequence": seq, "greedy": greedy, "logits_file": stem + ".logits.f32",
        "logits_shape": _write_logits(out_dir, stem + ".logits.f32", logits),
        "margins": _margins(logits),
        "measured": {
            "logit_std": round(float(logits.std()), 4),
            # the same reference run in float32: the error scale of an exact float32 engine
            "f32_vs_f64_max_abs": float((l32 - logits).abs().max()),
        },
    }
    if ftype in ("q8_0", "q4_0"):
        g8, l8 = greedy_and_logits(gpath, prompt_ids, N_CONTINUE, act_q8=True)
        seq8 = prompt_ids + g8[:-1]
        l8_32 = teacher_forced(gpath, seq8, torch.float32, act_q8=True)
        exact_on_seq = teacher_forced(gpath, seq, torch.float64, act_q8=True)
        e.update({
            "sequence_actq8": seq8, "greedy_actq8": g8, "logits_actq8_file": stem + ".actq8.logits.f32",
            "logits_actq8_shape": _write_logits(out_dir, stem + ".actq8.logits.f32", l8),
            "margins_actq8": _margins(l8),
        })
        e["measured"].update({
            # float32 emulation vs float64: a float32 engine's error scale on the actq8 fixtures (a near-tie
            # in one activation's rounding can flip it by one quantum, hence the max >> the mean)
            "actq8_f32_vs_f64_max_abs": float((l8_32 - l8).abs().max()),
            "actq8_f32_vs_f64_mean_abs": float((l8_32 - l8).abs().mean()),
            # what Q8_0 activations cost against exact activations, teacher-forced on `sequence`
            "actq8_vs_exact_max_abs": float((exact_on_seq - logits).abs().max()),
            "actq8_vs_exact_mean_abs": float((exact_on_seq - logits).abs().mean()),
            "greedy_actq8_equal_prefix": next((k for k in range(N_CONTINUE) if g8[k] != greedy[k]), N_CONTINUE),
        })
    return e


FORMATS = {
    "*.gguf": "GGUF v3, general.architecture=llama, alignment 32; see models/edgeinf_ref/export.py",
    "*.logits.f32": "raw little-endian float32, row-major, no header; shape logits_shape = [n_rows, vocab]. Row i = "
                    "next-token logits after consuming sequence[0..i] (sequence = prompt_ids + greedy[:-1], so "
                    "argmax of rows len(prompt_ids)-1.. gives greedy). Computed in float64 on the DEQUANTIZED "
                    "weights with exact activations, then rounded to float32",
    "*.actq8.logits.f32": "(q8_0/q4_0 only) same, but every weight-matmul input is quantized to Q8_0 (ggml "
                          "reference rounding) first, as the engine does; rows follow sequence_actq8 = "
                          "prompt_ids + greedy_actq8[:-1]",
    "greedy": "argmax continuation (n_continue tokens) of prompt_ids; ties -> lowest id",
    "margins": "top1 - top2 logit gap per row; a greedy flip is only legitimate where the gap is within tolerance",
    "measured": "error scales measured by the generator (see make_tiny.py): use them to set tolerances",
    "*.expect.txt": "the same per-model facts as plain text for C tests: `key v1 v2 ...` lines (gguf, ftype, tied, "
                    "vocab, n_prompt, prompt, n_rows, sequence, greedy, logits, margins, and for q8_0/q4_0 "
                    "sequence_actq8, greedy_actq8, logits_actq8, margins_actq8); '#' starts a comment line",
}


def main(out_dir: str):
    os.makedirs(out_dir, exist_ok=True)
    torch.set_num_threads(1)
    import sentencepiece as spm

    corpus_path = os.path.join(out_dir, "corpus.txt")
    with open(corpus_path, "w", encoding="utf-8") as f:
        f.write(make_corpus())
    tok_path = os.path.join(out_dir, "tokenizer.model")
    train_tokenizer(corpus_path, tok_path)
    sp = spm.SentencePieceProcessor(model_file=tok_path)
    assert sp.get_piece_size() == VOCAB
    prompt_ids = [sp.bos_id()] + sp.encode(PROMPT_TEXT)

    manifest = {
        "format_version": 1,
        "generator": "models/tools/make_tiny.py",
        "seed": SEED,
        "formats": FORMATS,
        "tokenizer": {"file": "tokenizer.model", "corpus": "corpus.txt", "vocab_size": VOCAB, "type": "bpe",
                      "byte_fallback": True, "normalization": "identity"},
        "prompt_text": PROMPT_TEXT,
        "prompt_ids": prompt_ids,
        "prompt_has_bos": True,
        "n_continue": N_CONTINUE,
        "config": dict(CFG),
        "models": {},
    }
    for fname, ftype, tied in VARIANTS:
        cfg = LlamaConfig(tie_embeddings=tied, **CFG)
        # the tied files share one weight set, so they differ only by their quantisation
        model = build_model(cfg, SEED if tied else SEED + 1)
        export_gguf(model, cfg, os.path.join(out_dir, fname), tokenizer_model=tok_path, ftype=ftype,
                    name=f"edgeinf-{fname[:-5]}")
        e = model_entry(out_dir, fname, ftype, tied, prompt_ids)
        manifest["models"][fname] = e
        print(f"{fname}: {e['bytes']} B, greedy distinct {len(set(e['greedy']))}, min margin {min(e['margins'])}, "
              f"{e['measured']}")
    with open(os.path.join(out_dir, "manifest.json"), "w", encoding="utf-8") as f:
        f.write(_json(manifest) + "\n")
    for fname, e in manifest["models"].items():
        write_expect(os.path.join(out_dir, fname[:-5] + ".expect.txt"), fname, e, manifest)


def _json(obj, ind: str = "") -> str:
    """JSON with one key per line but flat lists on one line (readable, diff-friendly)."""
    if isinstance(obj, dict):
        inner = ind + "  "
        items = [f"{inner}{json.dumps(k)}: {_json(v, inner)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + ind + "}"
    return json.dumps(obj, ensure_ascii=False)


def write_expect(path: str, fname: str, e: dict, manifest: dict):
    """Plain-text twin of one manifest entry for C tests: one `key value...` line each, values space-separated."""
    lines = [
        "# edgeinf tiny-model fixture (models/tools/make_tiny.py); format: key value... per line, see manifest.json",
        f"gguf {fname}",
        f"ftype {e['ftype']}",
        f"tied {int(e['tied'])}",
        f"vocab {manifest['config']['vocab_size']}",
        f"n_prompt {len(manifest['prompt_ids'])}",
        "prompt " + " ".join(map(str, manifest["prompt_ids"])),
        f"n_rows {len(e['sequence'])}",
        "sequence " + " ".join(map(str, e["sequence"])),
        "greedy " + " ".join(map(str, e["greedy"])),
        f"logits {e['logits_file']}",
        "margins " + " ".join(f"{m:.5f}" for m in e["margins"]),
    ]
    if "logits_actq8_file" in e:
        lines += [
            "sequence_actq8 " + " ".join(map(str, e["sequence_actq8"])),
            "greedy_actq8 " + " ".join(map(str, e["greedy_actq8"])),
            f"logits_actq8 {e['logits_actq8_file']}",
            "margins_actq8 " + " ".join(f"{m:.5f}" for m in e["margins_actq8"]),
        ]
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.join("tests", "fixtures", "tiny"))
