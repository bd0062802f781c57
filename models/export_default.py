#!/usr/bin/python3
"""Export the trained default model to GGUF (F32, Q8_0, Q4_0), check every export, ship the Q8_0, sample.

  /usr/bin/python3 models/export_default.py          # after models/train.py; no arguments needed

Reads the checkpoint of models/train.py (models/work/ckpt.pt, which names its tokenizer) and writes:
  models/work/edgeinf-default-{f32,q8_0,q4_0}.gguf   through the reference's GGUF writer
  models/edgeinf-default-q8_0.gguf, models/tokenizer.model    the shipped copies (--ship-dir; must be <= 40 MB)
  models/work/export-summary.json    per file: size, max |logit diff| vs the PyTorch model, validation ppl
  models/work/samples.json / .md     ten generations (fixed prompts and seeds) by the shipped Q8_0 file,
                                     run through the reference (load_gguf), temperature 0.8, top-k 40
Every export is loaded back with the reference GGUF reader; one that does not load, or whose logits
drift beyond the format's tolerance, stops the script with a message.
"""
import argparse
import json
import math
import os
import shutil
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
WORK = os.path.join(HERE, "work")
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from edgeinf_ref.llama import LlamaConfig, Llama  # noqa: E402
from edgeinf_ref.export import export_gguf, load_gguf  # noqa: E402

MAX_SHIP_BYTES = 40 * 1024 * 1024
# Max |logit difference| between the PyTorch model and the reloaded file, per format. F32 must be
# exact up to float reassociation; the quantized ones only need to be sane (their real cost is the
# perplexity column of export-summary.json).
TOLERANCE = {"f32": 1e-3, "q8_0": 1.0, "q4_0": 4.0}

PROMPTS = [
    "Once upon a time",
    "The old man looked at the sea and",
    "In the beginning",
    "She opened the door and saw",
    "The most important thing about computers is",
    "When the war was over, the soldiers",
    "A good friend is",
    "The city council voted on Tuesday to",
    "He said that the answer was",
    "The kernel documentation explains how",
]
SEEDS = list(range(1, 11))


def die(msg, code=2):
    print(f"export_default: {msg}", file=sys.stderr, flush=True)
    sys.exit(code)


def rel(p):
    return os.path.relpath(os.path.abspath(p), REPO)


@torch.no_grad()
def sample(model, sp, prompt, seed, n_new, temperature, top_k):
    """Temperature + top-k sampling through the reference's incremental (KV-cache) path."""
    g = torch.Generator().manual_seed(seed)
    ids = [sp.bos_id()] + sp.encode(prompt)
    st = model.new_state(None, 1)
    logits = model(torch.tensor([ids]), state=st)[0, -1]
    out = []
    for _ in range(n_new):
        lg = logits.float() / temperature
        if top_k:
            v, _ = torch.topk(lg, top_k)
            lg = torch.where(lg < v[-1], torch.full_like(lg, float("-inf")), lg)
        nxt = int(torch.multinomial(torch.softmax(lg, -1), 1, generator=g))
        if nxt == sp.eos_id():
            break
        out.append(nxt)
        if len(ids) + len(out) >= model.cfg.max_seq_len:
            break
        logits = model(torch.tensor([[nxt]]), state=st)[0, -1]
    # decode prompt + completion together: SentencePiece drops the leading space of a lone first piece
    head = sp.decode(ids[1:])
    return sp.decode(ids[1:] + out)[len(head):]


@torch.no_grad()
def val_ppl(model, stream, seq_len, rows):
    tot, cnt = 0.0, 0
    for r in range(rows):
        t = torch.from_numpy(stream[r * seq_len:r * seq_len + seq_len + 1].astype(np.int64))[None]
        if t.shape[1] < 2:
            break
        lg = model(t[:, :-1])
        tot += float(F.cross_entropy(lg.reshape(-1, lg.shape[-1]), t[0, 1:], reduction="sum"))
        cnt += t.shape[1] - 1
    return math.exp(tot / max(1, cnt)), cnt


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", default=os.path.join(WORK, "ckpt.pt"))
    ap.add_argument("--tokenizer", default="", help="default: the one the checkpoint names")
    ap.add_argument("--out-dir", default=WORK)
    ap.add_argument("--ship-dir", default=HERE, help="where the Q8_0 GGUF and tokenizer are copied ('' = don't)")
    ap.add_argument("--name", default="edgeinf-default")
    ap.add_argument("--corpus", default=os.path.join(WORK, "corpus"))
    ap.add_argument("--eval-rows", type=int, default=16, help="validation rows (of the model's context) for ppl")
    ap.add_argument("--samples", type=int, default=10)
    ap.add_argument("--new-tokens", type=int, default=80)
    ap.add_argument("--temperature", type=float, default=0.8)
    ap.add_argument("--top-k", type=int, default=40)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    if not os.path.exists(args.ckpt):
        die(f"{args.ckpt} not found: train first (/usr/bin/python3 models/train.py --time-budget MIN, or `make model`)")
    ck = torch.load(args.ckpt, map_location="cpu")
    cfg = LlamaConfig(**ck["config"])
    model = Llama(cfg)
    model.load_state_dict(ck["model"])
    model.eval()
    tok = args.tokenizer or ck.get("tokenizer") or os.path.join(WORK, "tokenizer.model")
    if not os.path.isabs(tok) and not os.path.exists(tok):
        tok = os.path.join(REPO, tok)
    if not os.path.exists(tok):
        die(f"tokenizer {tok} not found (the checkpoint names it; pass --tokenizer)")
    import sentencepiece as spm
    sp = spm.SentencePieceProcessor(model_file=tok)
    if sp.vocab_size() != cfg.vocab_size:
        die(f"tokenizer {tok} has {sp.vocab_size()} pieces but the model has vocab {cfg.vocab_size}")
    n_params = sum(p.numel() for p in model.parameters())
    print(f"[export] {rel(args.ckpt)}: {n_params:,d} params, step {ck['state']['step']}, "
          f"{ck['state']['tokens']:,d} tokens seen", flush=True)

    val = None
    vpath = os.path.join(args.corpus, "val.jsonl")
    if os.path.exists(vpath) and args.eval_rows:
        ids = []
        with open(vpath, encoding="utf-8") as f:
            for line in f:
                ids += [sp.bos_id()] + sp.encode(json.loads(line)["text"])
                if len(ids) > args.eval_rows * cfg.max_seq_len + 1:
                    break
        val = np.array(ids, dtype=np.int64)

    probe = torch.tensor([[sp.bos_id()] + sp.encode("The quick brown fox jumps over the lazy dog. " * 4)])
    with torch.no_grad():
        ref_logits = model(probe)[0]
    os.makedirs(args.out_dir, exist_ok=True)
    summary = {"checkpoint": rel(args.ckpt), "tokenizer": rel(tok), "params": n_params, "config": cfg.to_dict(),
               "files": {}}
    if val is not None:
        p, n = val_ppl(model, val, cfg.max_seq_len, args.eval_rows)
        summary["pytorch_val_ppl"] = p
        summary["val_ppl_tokens"] = n
        print(f"[export] PyTorch checkpoint: validation ppl {p:.3f} on {n:,d} tokens", flush=True)

    loaded = {}
    for ft in ("f32", "q8_0", "q4_0"):
        path = os.path.join(args.out_dir, f"{args.name}-{ft}.gguf")
        t0 = time.time()
        try:
            export_gguf(model, cfg, path, tokenizer_model=tok, ftype=ft, name=args.name)
        except Exception as e:
            die(f"export to {path} ({ft}) failed: {e}")
        try:
            m2, cfg2, _ = load_gguf(path)
        except Exception as e:
            die(f"the exported {path} does not load back: {e}")
        a, b = cfg2.to_dict(), cfg.to_dict()
        same = all(math.isclose(a[k], b[k], rel_tol=1e-6) if isinstance(b[k], float) else a[k] == b[k] for k in b)
        if not same:
            die(f"{path}: config read back {cfg2.to_dict()} differs from the model's {cfg.to_dict()}")
        with torch.no_grad():
            diff = float((m2(probe)[0] - ref_logits).abs().max())
        if not diff <= TOLERANCE[ft]:
            die(f"{path}: logits differ from the PyTorch model by {diff:.4g} (> {TOLERANCE[ft]} for {ft})")
        info = {"path": rel(path), "bytes": os.path.getsize(path), "max_abs_logit_diff": diff}
        if val is not None:
            info["val_ppl"], _ = val_ppl(m2, val, cfg.max_seq_len, args.eval_rows)
        summary["files"][ft] = info
        loaded[ft] = m2
        print(f"[export] {rel(path)}: {info['bytes'] / 1e6:.2f} MB, max |logit diff| {diff:.2e}"
              + (f", val ppl {info['val_ppl']:.3f}" if "val_ppl" in info else "")
              + f" [{time.time() - t0:.1f}s]", flush=True)

    q8 = os.path.join(args.out_dir, f"{args.name}-q8_0.gguf")
    if args.ship_dir:
        if os.path.getsize(q8) > MAX_SHIP_BYTES:
            die(f"{q8} is {os.path.getsize(q8) / 1e6:.1f} MB, over the 40 MB limit for the shipped model")
        os.makedirs(args.ship_dir, exist_ok=True)
        dst = os.path.join(args.ship_dir, f"{args.name}-q8_0.gguf")
        shutil.copyfile(q8, dst)
        shutil.copyfile(tok, os.path.join(args.ship_dir, "tokenizer.model"))
        summary["shipped"] = [rel(dst), rel(os.path.join(args.ship_dir, "tokenizer.model"))]
        print(f"[export] shipped {rel(dst)} and {rel(os.path.join(args.ship_dir, 'tokenizer.model'))}", flush=True)

    samples = []
    m = loaded["q8_0"]
    for i in range(min(args.samples, len(PROMPTS))):
        text = sample(m, sp, PROMPTS[i], SEEDS[i], args.new_tokens, args.temperature, args.top_k)
        samples.append({"seed": SEEDS[i], "prompt": PROMPTS[i], "completion": text})
        print(f"[sample seed {SEEDS[i]}] {PROMPTS[i]}|{text}", flush=True)
    gen = {"model": summary.get("shipped", [rel(q8)])[0], "runner": "edgeinf_ref (PyTorch) on the Q8_0 GGUF",
           "temperature": args.temperature, "top_k": args.top_k, "new_tokens": args.new_tokens,
           "sampler": "softmax(logits/T) over the top-k, torch.multinomial with torch.Generator().manual_seed(seed)",
           "samples": samples}
    with open(os.path.join(args.out_dir, "samples.json"), "w") as f:
        json.dump(gen, f, indent=1, ensure_ascii=False)
    with open(os.path.join(args.out_dir, "samples.md"), "w") as f:
        f.write(f"Samples from `{gen['model']}` ({gen['runner']}; temperature {args.temperature}, top-k {args.top_k}, "
                f"{args.new_tokens} new tokens). The prompt is in bold.\n\n")
        for s in samples:
            f.write(f"- seed {s['seed']}: **{s['prompt']}**{s['completion']}\n")
    summary["samples"] = rel(os.path.join(args.out_dir, "samples.json"))
    with open(os.path.join(args.out_dir, "export-summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    print(f"[export] summary: {rel(os.path.join(args.out_dir, 'export-summary.json'))}", flush=True)


if __name__ == "__main__":
    main()
