#!/usr/bin/python3
"""Pretrain the default edgeinf model (Llama: RoPE, RMSNorm, GQA, SwiGLU) from the shared reference.

One script for both machines: `--device auto` picks CUDA when present (bf16 autocast, the `gpu` size)
and the CPU otherwise (fp32, the `cpu` size, torch.set_num_threads(--threads)).

Data: the corpus of models/corpus/build.py, tokenized with the tokenizer of models/train_tokenizer.py.
Every training row is `--seq-len` tokens; ~`--passkey-frac` of the rows start with a synthetic
passkey-retrieval sample (DESIGN.md §3.3: in-window retrieval must be learnt in pretraining) and are
filled up with corpus text, the others are random windows of the document stream (documents joined
with BOS).

The learning-rate schedule (linear warmup, cosine decay to --min-lr-frac) runs over the wall-clock
budget when --time-budget is given (so training ends on time whatever the throughput), over
--max-steps otherwise. Checkpoints (model, optimizer, progress) every --ckpt-minutes to --ckpt;
--resume continues from it. At the end: validation and held-out perplexity, loss curve PNG, summary.

  /usr/bin/python3 models/train.py --time-budget 85            # the default model
  /usr/bin/python3 models/train.py --bench 60 --size cpu-s     # measure tokens/s of a config
"""
import argparse
import copy
import csv
import hashlib
import json
import math
import os
import platform
import random
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

# Model sizes. dims are multiples of 32; head_dim 32 or 64; GQA with fewer KV heads than heads.
SIZES = {
    "tiny":  dict(dim=64, n_layers=2, n_heads=2, n_kv_heads=1, ffn_dim=160),                # smoke
    "cpu":   dict(dim=128, n_layers=6, n_heads=4, n_kv_heads=2, ffn_dim=352),
    "cpu-m": dict(dim=192, n_layers=4, n_heads=6, n_kv_heads=2, ffn_dim=512),
    "cpu-l": dict(dim=256, n_layers=6, n_heads=8, n_kv_heads=2, ffn_dim=704),
    # head_dim 64: the EdgeInfinite memory per KV head is head_dim x head_dim, so wider heads hold more
    "gpu":   dict(dim=256, n_layers=8, n_heads=4, n_kv_heads=2, ffn_dim=704),
}

PASSKEY_INTRO = ("There is an important info hidden inside a lot of irrelevant text. Find it and memorize them. "
                 "I will quiz you about the important information there.")
PASSKEY_FILLER = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."


def die(msg, code=2):
    print(f"train: {msg}", file=sys.stderr, flush=True)
    sys.exit(code)


# ---------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------

def load_split(corpus, split):
    path = os.path.join(corpus, f"{split}.jsonl")
    if not os.path.exists(path):
        die(f"{path} not found: build the corpus first with `/usr/bin/python3 models/corpus/build.py` "
            f"(or `make model`)")
    with open(path, encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f]


def tokenize_split(sp, corpus, split, cache_dir):
    """Token stream of a split: each document as BOS + its tokens, concatenated (uint16, cached)."""
    src = os.path.join(corpus, f"{split}.jsonl")
    # content hashes (not mtimes, not Python's salted hash()) so the cache survives copies between machines
    h = hashlib.sha1()
    with open(src, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    key = f"{split}-{h.hexdigest()[:12]}-{sp.vocab_size()}-{hashlib.sha1(sp.serialized_model_proto()).hexdigest()[:8]}"
    cache = os.path.join(cache_dir, f"tokens-{key}.npy")
    if os.path.exists(cache):
        return np.load(cache)
    docs = load_split(corpus, split)
    if not docs:
        die(f"the {split} split of {corpus} is empty; rebuild the corpus")
    out = []
    for d in docs:
        out.append(sp.bos_id())
        out.extend(sp.encode(d))
    arr = np.array(out, dtype=np.uint16 if sp.vocab_size() < 65536 else np.int32)
    os.makedirs(cache_dir, exist_ok=True)
    np.save(cache, arr)
    return arr


def passkey_text(rng, n_filler):
    """One passkey-retrieval sample (the standard text, issue 5) with n_filler filler sentences."""
    key = rng.randint(10000, 99999)
    depth = rng.randint(0, n_filler)
    parts = [PASSKEY_INTRO] + [PASSKEY_FILLER] * depth
    parts.append(f"The pass key is {key}. Remember it. {key} is the pass key.")
    parts += [PASSKEY_FILLER] * (n_filler - depth)
    parts.append(f"What is the pass key? The pass key is {key}.")
    return " ".join(parts)


class Batcher:
    """Draws training rows: random windows of the token stream, some led by a passkey sample."""

    def __init__(self, sp, stream, seq_len, passkey_frac, seed, pk_min=120, pk_max=1000):
        self.sp, self.stream, self.T = sp, stream, seq_len
        self.pk_frac = passkey_frac
        self.rng = random.Random(seed)
        # filler sentences per token, to aim at pk_min..pk_max tokens
        probe = len(sp.encode(passkey_text(random.Random(0), 10)))
        probe2 = len(sp.encode(passkey_text(random.Random(0), 20)))
        self.tok_per_filler = max(1e-3, (probe2 - probe) / 10)
        self.tok_base = probe - 10 * self.tok_per_filler
        self.pk_min, self.pk_max = pk_min, min(pk_max, seq_len - 8)
        if len(stream) < seq_len + 2:
            die(f"training stream has {len(stream)} tokens, fewer than one row of {seq_len + 1}: corpus too small")

    def window(self, n):
        i = self.rng.randrange(0, len(self.stream) - n)
        return self.stream[i:i + n].astype(np.int64)

    def row(self):
        n = self.T + 1
        if self.pk_frac > 0 and self.rng.random() < self.pk_frac and self.pk_max > self.pk_min:
            target = self.rng.randint(self.pk_min, self.pk_max)
            nf = max(1, int((target - self.tok_base) / self.tok_per_filler))
            ids = [self.sp.bos_id()] + self.sp.encode(passkey_text(self.rng, nf))
            ids = ids[:n]
            rest = n - len(ids)
            if rest > 0:
                ids = np.concatenate([np.array(ids, dtype=np.int64), [self.sp.bos_id()], self.window(rest)])[:n]
            return np.asarray(ids, dtype=np.int64)
        return self.window(n)

    def batch(self, B):
        rows = np.stack([self.row() for _ in range(B)])
        x = torch.from_numpy(rows[:, :-1].copy())
        y = torch.from_numpy(rows[:, 1:].copy())
        return x, y


# ---------------------------------------------------------------------------------------------
# model / training helpers
# ---------------------------------------------------------------------------------------------

def make_config(args, vocab):
    base = dict(SIZES[args.size])
    for k in ("dim", "n_layers", "n_heads", "n_kv_heads", "ffn_dim"):
        v = getattr(args, k)
        if v:
            base[k] = v
    return LlamaConfig(vocab_size=vocab, max_seq_len=args.seq_len, tie_embeddings=True, **base)


def lr_at(progress, args):
    """Linear warmup over --warmup of the run, then cosine decay to min_lr_frac * lr."""
    w = args.warmup
    if progress < w:
        return args.lr * max(progress / w, 1e-3)
    p = min(1.0, (progress - w) / max(1e-9, 1 - w))
    return args.lr * (args.min_lr_frac + (1 - args.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * p)))


@torch.no_grad()
def evaluate(model, stream, seq_len, max_rows, device, autocast, batch=4):
    """Mean next-token loss over consecutive non-overlapping rows of a token stream."""
    model.eval()
    n_rows = (len(stream) - 1) // seq_len
    if max_rows:
        n_rows = min(n_rows, max_rows)
    if n_rows == 0:
        model.train()
        return float("nan"), 0
    tot, cnt = 0.0, 0
    for r0 in range(0, n_rows, batch):
        rows = [stream[r * seq_len:r * seq_len + seq_len + 1].astype(np.int64) for r in range(r0, min(n_rows, r0 + batch))]
        t = torch.from_numpy(np.stack(rows)).to(device)
        with autocast():
            logits = model(t[:, :-1])
        loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), t[:, 1:].reshape(-1), reduction="sum")
        tot += float(loss)
        cnt += t[:, 1:].numel()
    model.train()
    return tot / cnt, cnt


def save_ckpt(path, model, opt, cfg, state, args, tokenizer):
    tmp = path + ".tmp"
    torch.save({"model": model.state_dict(), "optim": opt.state_dict(), "config": cfg.to_dict(),
                "state": state, "args": vars(args), "tokenizer": tokenizer}, tmp)
    os.replace(tmp, path)


def plot_loss(csv_path, png_path, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    steps, tok, tr, vt, vl = [], [], [], [], []
    with open(csv_path) as f:
        for r in csv.DictReader(f):
            if r["train_loss"]:
                tok.append(float(r["tokens"]) / 1e6)
                tr.append(float(r["train_loss"]))
            if r["val_loss"]:
                vt.append(float(r["tokens"]) / 1e6)
                vl.append(float(r["val_loss"]))
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(tok, tr, label="train (smoothed batch loss)", lw=1)
    ax.plot(vt, vl, "o-", label="validation", ms=3)
    ax.set_xlabel("tokens seen (millions)")
    ax.set_ylabel("cross-entropy (nats/token)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(png_path)), exist_ok=True)
    fig.savefig(png_path, dpi=110)
    plt.close(fig)


def hardware(device):
    if device.type == "cuda":
        return f"CUDA {torch.cuda.get_device_name(0)}"
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"CPU {cpu}, {torch.get_num_threads()} threads ({os.cpu_count()} cores visible)"


# ---------------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--size", default=None, choices=list(SIZES), help="default: gpu on CUDA, cpu on CPU")
    for k in ("dim", "n_layers", "n_heads", "n_kv_heads", "ffn_dim"):
        ap.add_argument(f"--{k.replace('_', '-')}", dest=k, type=int, default=0, help="override the size preset")
    ap.add_argument("--corpus", default=os.path.join(WORK, "corpus"))
    ap.add_argument("--tokenizer", default=os.path.join(WORK, "tokenizer.model"))
    ap.add_argument("--seq-len", type=int, default=1024, help="context length (the final training length)")
    ap.add_argument("--short-seq", type=int, default=0,
                    help="curriculum: train at this shorter length (same tokens per step) first")
    ap.add_argument("--short-frac", type=float, default=0.75, help="fraction of the run at --short-seq")
    ap.add_argument("--batch-size", type=int, default=0, help="rows per step (default 8 CPU, 32 CUDA)")
    ap.add_argument("--lr", type=float, default=0)
    ap.add_argument("--min-lr-frac", type=float, default=0.1)
    ap.add_argument("--warmup", type=float, default=0.03, help="fraction of the run")
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--clip", type=float, default=1.0)
    ap.add_argument("--passkey-frac", type=float, default=0.25)
    ap.add_argument("--time-budget", type=float, default=0, help="minutes of training (schedule follows it)")
    ap.add_argument("--max-steps", type=int, default=0, help="step budget when no --time-budget")
    ap.add_argument("--eval-every", type=float, default=5, help="minutes (time budget) or steps/… between evals")
    ap.add_argument("--eval-rows", type=int, default=16, help="validation rows per periodic eval")
    ap.add_argument("--final-eval-rows", type=int, default=0, help="0 = whole split")
    ap.add_argument("--no-keep-best", dest="keep_best", action="store_false",
                    help="keep the last weights instead of those of the best periodic validation loss")
    ap.add_argument("--ckpt", default=os.path.join(WORK, "ckpt.pt"))
    ap.add_argument("--ckpt-minutes", type=float, default=5)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--log-csv", default=os.path.join(WORK, "train-log.csv"))
    ap.add_argument("--plot", default=os.path.join(REPO, "docs", "model-loss.png"))
    ap.add_argument("--summary", default=os.path.join(WORK, "train-summary.json"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1337)
    ap.add_argument("--bench", type=float, default=0, help="seconds: measure tokens/s, save nothing")
    ap.add_argument("--assert-loss-falls", action="store_true", help="exit 1 unless final train loss < first")
    args = ap.parse_args()
    wall0 = time.time()

    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(args.device)
        if device.type == "cuda" and not torch.cuda.is_available():
            die("--device cuda but no CUDA device is available")
    cuda = device.type == "cuda"
    torch.set_num_threads(args.threads)
    args.size = args.size or ("gpu" if cuda else "cpu")
    args.batch_size = args.batch_size or (32 if cuda else 8)
    args.lr = args.lr or (1e-3 if cuda else 2e-3)
    torch.manual_seed(args.seed)

    if not os.path.exists(args.tokenizer):
        die(f"{args.tokenizer} not found: train it with `/usr/bin/python3 models/train_tokenizer.py` (or `make model`)")
    import sentencepiece as spm
    sp = spm.SentencePieceProcessor(model_file=args.tokenizer)
    cache_dir = os.path.join(os.path.dirname(os.path.abspath(args.ckpt)), "tokens")
    t0 = time.time()
    train_stream = tokenize_split(sp, args.corpus, "train", cache_dir)
    val_stream = tokenize_split(sp, args.corpus, "val", cache_dir)
    held_stream = tokenize_split(sp, args.corpus, "heldout", cache_dir)
    print(f"[train] tokens: train {len(train_stream):,d} val {len(val_stream):,d} heldout {len(held_stream):,d} "
          f"({time.time() - t0:.1f}s)", flush=True)

    cfg = make_config(args, sp.vocab_size())
    try:
        cfg.validate()
    except ValueError as e:
        die(f"bad model config: {e}")
    model = Llama(cfg).to(device)
    n_params = sum(p.numel() for p in model.parameters())
    n_emb = model.tok_embeddings.weight.numel()
    print(f"[train] device {device} ({hardware(device)}); size {args.size}: {cfg.to_dict()}", flush=True)
    print(f"[train] parameters {n_params:,d} ({n_emb:,d} in the tied embedding = {n_emb / n_params:.0%})", flush=True)

    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt_kw = dict(lr=args.lr, betas=(0.9, 0.95), eps=1e-8)
    if cuda:
        opt_kw["fused"] = False
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], **opt_kw)
    if cuda:
        def autocast():
            return torch.autocast("cuda", dtype=torch.bfloat16)
    else:
        import contextlib

        def autocast():
            return contextlib.nullcontext()

    state = {"step": 0, "tokens": 0, "train_seconds": 0.0, "first_loss": None, "ema_loss": None, "best_val": None}
    if args.resume:
        if not os.path.exists(args.ckpt):
            die(f"--resume but {args.ckpt} does not exist")
        ck = torch.load(args.ckpt, map_location=device)
        if ck["config"] != cfg.to_dict():
            die(f"checkpoint config {ck['config']} differs from this run's {cfg.to_dict()}: use the same size flags")
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optim"])
        state = ck["state"]
        print(f"[train] resumed at step {state['step']}, {state['tokens']:,d} tokens, "
              f"{state['train_seconds'] / 60:.1f} min", flush=True)

    batcher_long = Batcher(sp, train_stream, args.seq_len, args.passkey_frac, args.seed + state["step"])
    batcher_short = (Batcher(sp, train_stream, args.short_seq, args.passkey_frac, args.seed + 7 + state["step"])
                     if args.short_seq else None)
    budget_s = args.bench if args.bench else args.time_budget * 60
    if not budget_s and not args.max_steps:
        die("give --time-budget MIN or --max-steps N")

    def progress():
        if budget_s:
            return state["train_seconds"] / budget_s
        return state["step"] / args.max_steps

    log_new = not (args.resume and os.path.exists(args.log_csv))
    if not args.bench:
        os.makedirs(os.path.dirname(os.path.abspath(args.log_csv)), exist_ok=True)
        logf = open(args.log_csv, "w" if log_new else "a", newline="")
        logw = csv.writer(logf)
        if log_new:
            logw.writerow(["step", "tokens", "train_minutes", "lr", "train_loss", "val_loss"])
    last_ckpt = time.time()
    last_eval_t = state["train_seconds"]
    best_weights = None   # weights at the best periodic validation loss (this process only)
    last_print = time.time()
    bench_t0 = None
    bench_tok0 = 0
    model.train()
    try:
        while progress() < 1.0:
            ts = time.time()
            lr = lr_at(progress(), args)
            for g in opt.param_groups:
                g["lr"] = lr
            if batcher_short is not None and progress() < args.short_frac:
                x, y = batcher_short.batch(args.batch_size * args.seq_len // args.short_seq)
            else:
                x, y = batcher_long.batch(args.batch_size)
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with autocast():
                logits = model(x)
            loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
            opt.step()
            lv = float(loss)
            if not math.isfinite(lv):
                die(f"loss became {lv} at step {state['step']}: lower --lr", code=3)
            state["step"] += 1
            state["tokens"] += x.numel()
            state["train_seconds"] += time.time() - ts
            if state["first_loss"] is None:
                state["first_loss"] = lv
            state["ema_loss"] = lv if state["ema_loss"] is None else 0.95 * state["ema_loss"] + 0.05 * lv
            if args.bench:
                if state["step"] == 2:  # skip warm-up steps (allocation, first-call overhead)
                    bench_t0, bench_tok0 = time.time(), state["tokens"]
                continue
            if time.time() - last_print > 30 or state["step"] <= 3:
                print(f"[train] step {state['step']} tok {state['tokens']:,d} loss {lv:.3f} (ema {state['ema_loss']:.3f}) "
                      f"lr {lr:.2e} gnorm {float(gnorm):.2f} {state['tokens'] / max(1e-9, state['train_seconds']):.0f} tok/s "
                      f"{state['train_seconds'] / 60:.1f}/{budget_s / 60 if budget_s else 0:.0f} min", flush=True)
                last_print = time.time()
                logw.writerow([state["step"], state["tokens"], f"{state['train_seconds'] / 60:.3f}", f"{lr:.3e}",
                               f"{state['ema_loss']:.4f}", ""])
                logf.flush()
            every = args.eval_every * 60 if budget_s else args.eval_every
            since = (state["train_seconds"] - last_eval_t) if budget_s else (state["step"] % max(1, int(every)) == 0) * every
            if since >= every:
                vl, _ = evaluate(model, val_stream, args.seq_len, args.eval_rows, device, autocast)
                last_eval_t = state["train_seconds"]
                is_best = state["best_val"] is None or vl < state["best_val"]
                if is_best:
                    state["best_val"], state["best_step"] = vl, state["step"]
                    best_weights = copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()})
                print(f"[train] eval step {state['step']}: val loss {vl:.4f} (ppl {math.exp(vl):.1f})"
                      f"{' *best*' if is_best else ''}", flush=True)
                logw.writerow([state["step"], state["tokens"], f"{state['train_seconds'] / 60:.3f}", f"{lr:.3e}", "",
                               f"{vl:.4f}"])
                logf.flush()
            if time.time() - last_ckpt > args.ckpt_minutes * 60:
                save_ckpt(args.ckpt, model, opt, cfg, state, args, args.tokenizer)
                last_ckpt = time.time()
    except RuntimeError as e:
        if "out of memory" in str(e).lower():
            die(f"the GPU ran out of memory with --batch-size {args.batch_size} x --seq-len {args.seq_len}: "
                f"retry with a smaller --batch-size (e.g. {max(1, args.batch_size // 2)})", code=4)
        raise

    if args.bench:
        dt = time.time() - bench_t0 if bench_t0 else float("nan")
        tps = (state["tokens"] - bench_tok0) / dt if bench_t0 else float("nan")
        print(json.dumps({"size": args.size, "params": n_params, "config": cfg.to_dict(), "batch": args.batch_size,
                          "seq_len": args.seq_len, "steps": state["step"], "tokens_per_s": round(tps, 1),
                          "device": hardware(device)}), flush=True)
        return

    if args.keep_best and best_weights is not None:
        # Small corpus, many epochs: the last step can be past the best point; validation picks the weights.
        vl_last, _ = evaluate(model, val_stream, args.seq_len, args.eval_rows, device, autocast)
        if vl_last > state["best_val"]:
            model.load_state_dict(best_weights)
            print(f"[train] kept the weights of step {state['best_step']} (periodic val loss {state['best_val']:.4f}; "
                  f"last step {vl_last:.4f})", flush=True)
            state["kept_step"] = state["best_step"]
    save_ckpt(args.ckpt, model, opt, cfg, state, args, args.tokenizer)
    print(f"[train] training done: {state['step']} steps, {state['tokens']:,d} tokens, "
          f"{state['train_seconds'] / 60:.1f} min; final evaluation…", flush=True)
    te = time.time()
    vl, vn = evaluate(model, val_stream, args.seq_len, args.final_eval_rows, device, autocast)
    hl, hn = evaluate(model, held_stream, args.seq_len, args.final_eval_rows, device, autocast)
    logw.writerow([state["step"], state["tokens"], f"{state['train_seconds'] / 60:.3f}", "", "", f"{vl:.4f}"])
    logf.close()
    print(f"[train] validation loss {vl:.4f} ppl {math.exp(vl):.2f} ({vn:,d} tokens); "
          f"held-out loss {hl:.4f} ppl {math.exp(hl):.2f} ({hn:,d} tokens) [{time.time() - te:.0f}s]", flush=True)
    title = (f"edgeinf default model: {n_params / 1e6:.1f}M params, {state['tokens'] / 1e6:.1f}M tokens, "
             f"{hardware(device)[:60]}")
    try:
        plot_loss(args.log_csv, args.plot, title)
        print(f"[train] loss curve: {args.plot}", flush=True)
    except Exception as e:  # a plot failure must not lose the run's summary
        print(f"[train] warning: could not plot the loss curve: {e}", flush=True)
    summary = {
        "params": n_params, "embedding_params": n_emb, "config": cfg.to_dict(), "size": args.size,
        "tokens_seen": state["tokens"], "steps": state["step"], "train_minutes": round(state["train_seconds"] / 60, 2),
        "process_wall_minutes": round((time.time() - wall0) / 60, 2), "resumed": bool(args.resume),
        "tokens_per_s": round(state["tokens"] / max(1e-9, state["train_seconds"]), 1),
        "hardware": hardware(device), "device": device.type, "dtype": "bf16 autocast" if cuda else "fp32",
        "batch_size": args.batch_size, "seq_len": args.seq_len, "lr": args.lr, "min_lr_frac": args.min_lr_frac,
        "warmup_frac": args.warmup, "weight_decay": args.weight_decay, "clip": args.clip,
        "passkey_frac": args.passkey_frac, "kept_step": state.get("kept_step"), "short_seq": args.short_seq, "short_frac": args.short_frac, "train_tokens_in_corpus": int(len(train_stream)),
        "epochs": round(state["tokens"] / max(1, len(train_stream)), 3),
        "first_train_loss": state["first_loss"], "final_train_loss_ema": state["ema_loss"],
        "val_loss": vl, "val_ppl": math.exp(vl), "val_tokens": vn,
        "heldout_loss": hl, "heldout_ppl": math.exp(hl), "heldout_tokens": hn,
        "tokenizer": os.path.relpath(os.path.abspath(args.tokenizer), REPO), "vocab_size": sp.vocab_size(),
        "checkpoint": os.path.relpath(os.path.abspath(args.ckpt), REPO),
        "command": "models/train.py " + " ".join(sys.argv[1:]),
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.summary)), exist_ok=True)
    with open(args.summary, "w") as f:
        json.dump(summary, f, indent=1)
    print(f"[train] summary: {args.summary}", flush=True)
    if args.assert_loss_falls:
        if not (state["ema_loss"] < state["first_loss"] - 0.5):
            die(f"loss did not fall: first {state['first_loss']:.3f}, final {state['ema_loss']:.3f}", code=1)
        print(f"[train] loss fell: {state['first_loss']:.3f} -> {state['ema_loss']:.3f}")


if __name__ == "__main__":
    main()
