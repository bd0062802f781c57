#!/usr/bin/python3
"""Post-train a base Llama GGUF to PoD attention (docs/pod.md, DESIGN.md §3.4; issue 7 item 4).

The base GGUF and a PoD adapter GGUF (blocks, n_sink, n_recent, share: models/pod_calibrate.py) are loaded with the
reference (models/edgeinf_ref, dequantized weights). The model is fine-tuned on the corpus with the `pod` policy in
the forward pass (the reference's batched PodPolicy: exactly what the engine computes), so the non-anchor layers learn
to attend to distant tokens through their anchor's keys (share=keys) or logits (share=scores).

  * Method: --method full (default) trains every weight (AdamW, lr 1e-4, no weight decay); --method lora trains rank
    --rank adapters on the attention (and FFN) matrices, merged into the weights at export. The default was chosen by
    measurement (docs/pod.md, "Post-training"): on an H100, same 2.5 min, full reached a lower validation perplexity
    with PoD and with full attention than LoRA rank 16, and ran more steps per second.
  * Data: the pretraining distribution of models/train.py (random --seq-len windows of the train split, documents
    joined with BOS, ~--passkey-frac of the rows led by a passkey sample); --seq-len defaults to the model's context
    and must exceed n_sink + n_recent (otherwise PoD drops nothing). A fraction --full-frac of the steps runs with
    full attention so the full-attention model is kept too.
  * Validation every --eval-every (minutes with --time-budget, steps with --steps): perplexity of consecutive
    val-split windows with the PoD policy AND with full attention. The kept weights are those with the best PoD
    perplexity among the evaluations whose full-attention perplexity is at most --full-tol above the base model's
    (the base itself, step 0, always qualifies: a run that does not help writes the base weights back).
  * Output: --out, a llama GGUF of the same type as the input (the reference's writer, export.export_gguf; the
    tokenizer keys are copied verbatim), re-loaded and compared with the trained model; --out-adapter (default
    OUT-pod.gguf), the adapter with the trained share mode; --summary (default OUT.json).
  * CUDA when available (bf16 autocast), CPU otherwise (fp32, --threads).

  /usr/bin/python3 models/train_pod.py --model models/edgeinf-default-q8_0.gguf --adapter models/edgeinf-default-pod.gguf \\
      --out build/pod-train/edgeinf-default-podtrained-q8_0.gguf --time-budget 10
  make pod-train MODEL=... ADAPTER=... OUT=...          make pod-train-smoke          (mk/pod.mk)
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from edgeinf_ref.export import FTYPES, export_gguf, load_gguf  # noqa: E402
from edgeinf_ref.gguf import read_gguf  # noqa: E402
from edgeinf_ref.pod import load_pod_gguf  # noqa: E402

# max |logit difference| between the trained model and its re-loaded GGUF, per file type (as export_default.py)
TOLERANCE = {"f32": 1e-3, "f16": 0.05, "q8_0": 1.0, "q4_0": 4.0}
LORA_TARGETS = {"attn": ("wq", "wk", "wv", "wo"), "all": ("wq", "wk", "wv", "wo", "w1", "w2", "w3")}


def die(msg, code=2):
    print(f"train_pod: {msg}", file=sys.stderr, flush=True)
    sys.exit(code)


def log(msg):
    print(f"[pod-train] {msg}", flush=True)


# ----------------------------------------------------------------------------------------------------------
# Low-rank adapters, merged at export
# ----------------------------------------------------------------------------------------------------------

class LoRALinear(nn.Module):
    """y = x Wᵀ + (alpha / r) · (x Aᵀ) Bᵀ with W frozen; B starts at zero, so the wrapped layer starts as the base."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float, gen: torch.Generator):
        super().__init__()
        self.base = base
        base.weight.requires_grad_(False)
        out_f, in_f = base.weight.shape
        self.A = nn.Parameter(torch.randn(rank, in_f, generator=gen) / math.sqrt(in_f))
        self.B = nn.Parameter(torch.zeros(out_f, rank))
        self.scale = alpha / rank

    def forward(self, x):
        return self.base(x) + F.linear(F.linear(x, self.A.to(x.dtype)), self.B.to(x.dtype)) * self.scale

    def merged(self) -> nn.Linear:
        """The base Linear with the low-rank update folded into its weight (float32)."""
        with torch.no_grad():
            self.base.weight += (self.B.float() @ self.A.float()) * self.scale
        return self.base


def add_lora(model, targets, rank: int, alpha: float, seed: int):
    """Freeze every base weight and wrap the target Linears of every layer. Returns the LoRA parameters."""
    for p in model.parameters():
        p.requires_grad_(False)
    gen = torch.Generator().manual_seed(seed)
    params = []
    for blk in model.layers:
        for owner in (blk.attention, blk.feed_forward):
            for name in targets:
                if hasattr(owner, name):
                    w = LoRALinear(getattr(owner, name), rank, alpha, gen)
                    setattr(owner, name, w)
                    params += [w.A, w.B]
    return params


def merge_lora(model):
    """Replace every LoRALinear by its merged Linear (in place)."""
    for blk in model.layers:
        for owner in (blk.attention, blk.feed_forward):
            for name, mod in list(owner.named_children()):
                if isinstance(mod, LoRALinear):
                    setattr(owner, name, mod.merged())


# ----------------------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------------------

def token_streams(sp, corpus: str, cache_dir: str):
    """(train stream, val stream, description): the corpus directory's train/val splits tokenized as models/train.py
    does (BOS + document, concatenated, cached), or a text file split 90/10."""
    if os.path.isdir(corpus):
        import train as pretrain   # models/train.py: the same tokenization and token cache
        for split in ("train", "val"):
            if not os.path.exists(os.path.join(corpus, f"{split}.jsonl")):
                die(f"{os.path.join(corpus, split + '.jsonl')} not found (build the corpus with "
                    f"models/corpus/build.py, or pass --corpus FILE.txt)")
        tr = pretrain.tokenize_split(sp, corpus, "train", cache_dir)
        va = pretrain.tokenize_split(sp, corpus, "val", cache_dir)
        return tr, va, f"{corpus} (train.jsonl / val.jsonl)"
    if os.path.isfile(corpus):
        with open(corpus, encoding="utf-8") as f:
            ids = [sp.bos_id()] + sp.encode(f.read())
        arr = np.array(ids, dtype=np.int64)
        cut = int(len(arr) * 0.9)
        return arr[:cut], arr[cut:], f"{corpus} (first 90% train, last 10% validation)"
    die(f"--corpus {corpus}: no such file or directory")


def val_rows(stream, seq_len: int, max_rows: int):
    """Consecutive non-overlapping rows of seq_len + 1 tokens (models/train.py's evaluation rows)."""
    n = (len(stream) - 1) // seq_len
    if max_rows:
        n = min(n, max_rows)
    return [torch.from_numpy(stream[r * seq_len:r * seq_len + seq_len + 1].astype(np.int64)) for r in range(n)]


@torch.no_grad()
def evaluate(model, rows, policy, device, autocast, batch):
    """Mean next-token loss (nats) over the rows with `policy` (None = full attention)."""
    was = model.training
    model.eval()
    tot, cnt = 0.0, 0
    for i in range(0, len(rows), batch):
        t = torch.stack(rows[i:i + batch]).to(device)
        with autocast():
            lg = model(t[:, :-1], policy=policy)
        tot += float(F.cross_entropy(lg.float().reshape(-1, lg.shape[-1]), t[:, 1:].reshape(-1), reduction="sum"))
        cnt += t[:, 1:].numel()
    model.train(was)
    return tot / max(1, cnt)


# ----------------------------------------------------------------------------------------------------------
# Export
# ----------------------------------------------------------------------------------------------------------

def ftype_of(g) -> str:
    """The export type name of a llama GGUF (general.file_type, else the type of its first matrix)."""
    ft = g.get("general.file_type")
    for name, (code, mat) in FTYPES.items():
        if ft is not None and int(ft) == code:
            return name
    for t in g.tensors.values():
        if len(t.ne) == 2:
            for name, (code, mat) in FTYPES.items():
                if t.ggml_type == mat:
                    return name
    raise ValueError(f"file type {ft} is not one the reference writes ({', '.join(FTYPES)})")


def write_model(model, cfg, g_in, path: str, ftype: str, provenance: dict):
    """The trained weights as a llama GGUF of type ftype: the reference's writer, tokenizer keys (and chat template)
    copied verbatim from the input, provenance under edgeinf.pod_train.*."""
    from edgeinf_ref.gguf import T
    extra = [(k, v, g_in.types[k][0], g_in.types[k][1]) for k, v in g_in.metadata.items()
             if k.startswith("tokenizer.") or k.startswith("edgeinf.tokenizer.")]
    extra += [(f"edgeinf.pod_train.{k}", str(v), T.STRING, None) for k, v in provenance.items()]
    name = f"{g_in.get('general.name') or 'edgeinf'}+pod"
    export_gguf(model, cfg, path, tokenizer_model=None, ftype=ftype, name=name, chat_template=None,
                extra_metadata=extra)


# ----------------------------------------------------------------------------------------------------------
# main
# ----------------------------------------------------------------------------------------------------------

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="base llama GGUF")
    ap.add_argument("--adapter", required=True, help="PoD adapter GGUF (kind pod or edgeinfinite+pod) for the model")
    ap.add_argument("--out", required=True, help="post-trained model GGUF to write (same type as --model)")
    ap.add_argument("--out-adapter", default=None, help="copy of the adapter for --out (default: OUT-pod.gguf)")
    ap.add_argument("--summary", default=None, help="JSON summary (default: OUT.json)")
    ap.add_argument("--corpus", default=os.path.join(HERE, "work", "corpus"),
                    help="corpus dir (train.jsonl / val.jsonl) or a text file (90/10 split)")
    ap.add_argument("--share", choices=["scores", "keys"], default=None, help="share mode (default: the adapter's)")
    ap.add_argument("--method", choices=["full", "lora"], default="full")
    ap.add_argument("--rank", type=int, default=16, help="LoRA rank")
    ap.add_argument("--alpha", type=float, default=0, help="LoRA alpha (default: = rank)")
    ap.add_argument("--lora-targets", choices=sorted(LORA_TARGETS), default="all")
    ap.add_argument("--lr", type=float, default=0, help="peak learning rate (default 1e-3 lora, 1e-4 full)")
    ap.add_argument("--weight-decay", type=float, default=0.0)
    ap.add_argument("--warmup", type=float, default=0.05, help="fraction of the run")
    ap.add_argument("--clip", type=float, default=1.0)
    ap.add_argument("--seq-len", type=int, default=0, help="tokens per row (default: the model's context)")
    ap.add_argument("--batch", type=int, default=0, help="rows per step (default 16 CUDA, 2 CPU)")
    ap.add_argument("--passkey-frac", type=float, default=0.25, help="rows led by a passkey sample (as pretraining)")
    ap.add_argument("--full-frac", type=float, default=0.25, help="fraction of steps trained with full attention")
    ap.add_argument("--full-tol", type=float, default=0.01,
                    help="kept weights: full-attention val perplexity at most this fraction above the base's")
    ap.add_argument("--time-budget", type=float, default=0, help="minutes of training (the schedule follows it)")
    ap.add_argument("--steps", type=int, default=0, help="step budget when no --time-budget")
    ap.add_argument("--eval-every", type=float, default=0,
                    help="minutes (with --time-budget; default budget/6) or steps (default steps/4)")
    ap.add_argument("--eval-rows", type=int, default=16, help="validation rows of --seq-len tokens (0 = all)")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--smoke", action="store_true", help="exit 1 unless every loss is finite and the output re-loads")
    args = ap.parse_args(argv)

    t_start = time.time()
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.device == "cuda" and not torch.cuda.is_available():
        die("--device cuda but CUDA is not available")
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    torch.set_num_threads(max(1, args.threads))
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    use_bf16 = cuda and torch.cuda.is_bf16_supported()

    def autocast():
        return torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_bf16) if cuda else \
            torch.autocast("cpu", enabled=False)

    if not args.time_budget and not args.steps:
        die("give --time-budget MIN or --steps N")
    if args.time_budget < 0 or args.steps < 0:
        die("--time-budget and --steps must be >= 0")
    if args.method == "lora" and args.rank < 1:
        die(f"--rank {args.rank} must be >= 1")
    if not 0.0 <= args.full_frac < 1.0:
        die(f"--full-frac {args.full_frac} must lie in [0, 1)")
    if not 0.0 <= args.passkey_frac <= 1.0:
        die(f"--passkey-frac {args.passkey_frac} must lie in [0, 1]")

    # -- model, adapter, tokenizer --
    for what, p in (("--model", args.model), ("--adapter", args.adapter)):
        if not os.path.isfile(p):
            die(f"{what} {p}: no such file")
    try:
        g = read_gguf(args.model)
        model, cfg, _ = load_gguf(g, dtype=torch.float32)
        ftype = ftype_of(g)
    except (ValueError, KeyError, OSError) as e:
        die(f"--model {args.model}: {e}")
    try:
        pc, ei = load_pod_gguf(args.adapter, cfg)
    except (ValueError, KeyError, OSError) as e:
        die(f"--adapter {args.adapter}: {e}")
    share = args.share or pc.share
    policy = pc.policy(share)
    seq_len = args.seq_len or cfg.max_seq_len
    if seq_len > cfg.max_seq_len:
        die(f"--seq-len {seq_len} > the model's context {cfg.max_seq_len}")
    if seq_len <= pc.n_sink + pc.n_recent:
        die(f"--seq-len {seq_len} <= n_sink + n_recent = {pc.n_sink + pc.n_recent}: no query would have distant "
            f"tokens, PoD would change nothing")
    from edgeinf_ref.spm_proto import processor_from_gguf
    try:
        sp = processor_from_gguf(g)
    except ValueError as e:
        die(f"--model {args.model}: no usable tokenizer ({e})")
    model.to(device)
    n_base = sum(p.numel() for p in model.parameters())

    # -- data --
    import train as pretrain   # Batcher: the pretraining rows (windows of the stream, some led by a passkey sample)
    cache_dir = os.path.join(HERE, "work", "tokens")
    train_stream, val_stream, source = token_streams(sp, args.corpus, cache_dir)
    if len(train_stream) < seq_len + 2:
        die(f"{source}: the training text has {len(train_stream)} tokens, fewer than one row of {seq_len + 1}")
    rows_val = val_rows(val_stream, seq_len, args.eval_rows)
    if not rows_val:
        die(f"{source}: the validation text has fewer than {seq_len + 1} tokens")
    batcher = pretrain.Batcher(sp, train_stream, seq_len, args.passkey_frac, args.seed)
    batch = args.batch or (16 if cuda else 2)
    eval_batch = batch if cuda else 2

    # -- trainable parameters --
    if args.method == "lora":
        alpha = args.alpha or float(args.rank)
        params = add_lora(model, LORA_TARGETS[args.lora_targets], args.rank, alpha, args.seed)
        model.to(device)
        lr = args.lr or 1e-3
    else:
        params = [p for p in model.parameters()]
        for p in params:
            p.requires_grad_(True)
        lr = args.lr or 1e-4
    n_train = sum(p.numel() for p in params)
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": args.weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    opt = torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95))
    log(f"base {args.model}: {n_base:,} params, {cfg.n_layers} layers, {cfg.n_heads} heads ({cfg.n_kv_heads} KV), "
        f"ctx {cfg.max_seq_len}, type {ftype}; device {device}{' bf16 autocast' if use_bf16 else ''}"
        f"{'' if cuda else f', {torch.get_num_threads()} threads'}")
    log(f"policy {policy.describe()} (adapter {args.adapter}); method {args.method}"
        f"{f' rank {args.rank} on {args.lora_targets}' if args.method == 'lora' else ''}: {n_train:,} trainable "
        f"params ({n_train / n_base:.1%}); lr {lr:g}, batch {batch} x {seq_len} tokens, {args.full_frac:.0%} of "
        f"steps with full attention")
    log(f"data: {source}: {len(train_stream):,} train tokens, {len(rows_val)} validation rows of {seq_len}")

    # -- schedule --
    budget_s = args.time_budget * 60
    eval_every = args.eval_every or (args.time_budget / 6 if budget_s else max(1, args.steps // 4))

    def progress(step, train_s):
        return train_s / budget_s if budget_s else step / args.steps

    def lr_at(p):
        if p < args.warmup:
            return lr * max(p / args.warmup, 0.02)
        q = min(1.0, (p - args.warmup) / max(1e-9, 1 - args.warmup))
        return lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * q)))

    evals, history = [], []
    best = {}
    base_full = None

    def snapshot():
        return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}

    def do_eval(step, train_s):
        nonlocal base_full
        te = time.time()
        lp = evaluate(model, rows_val, policy, device, autocast, eval_batch)
        lf = evaluate(model, rows_val, None, device, autocast, eval_batch)
        if base_full is None:
            base_full = lf
        ok = math.exp(lf) <= math.exp(base_full) * (1 + args.full_tol) + 1e-12
        improved = ok and ("pod_loss" not in best or lp < best["pod_loss"])
        e = {"step": step, "train_minutes": round(train_s / 60, 3), "val_loss_pod": round(lp, 5),
             "val_ppl_pod": round(math.exp(lp), 4), "val_loss_full": round(lf, 5), "val_ppl_full": round(math.exp(lf), 4),
             "full_within_tol": ok, "best": improved}
        evals.append(e)
        if improved:
            best.update(pod_loss=lp, step=step, eval=e, state=snapshot())
        log(f"eval step {step}: val ppl pod {math.exp(lp):.3f}, full {math.exp(lf):.3f}"
            f"{'' if ok else ' (full above tolerance)'}{' *best*' if improved else ''} ({time.time() - te:.1f}s)")
        return e

    do_eval(0, 0.0)
    step, train_s, last_eval_s, ema = 0, 0.0, 0.0, None
    model.train()
    try:
        while progress(step, train_s) < 1.0:
            ts = time.time()
            p = progress(step, train_s)
            cur = lr_at(p)
            for gp in opt.param_groups:
                gp["lr"] = cur
            x, y = batcher.batch(batch)
            x, y = x.to(device), y.to(device)
            full_step = rng.random() < args.full_frac
            with autocast():
                lg = model(x, policy=None if full_step else policy)
            loss = F.cross_entropy(lg.float().reshape(-1, lg.shape[-1]), y.reshape(-1))
            lv = float(loss)
            if not math.isfinite(lv):
                die(f"step {step}: loss is {lv} (not finite): lower --lr", 1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            gnorm = float(torch.nn.utils.clip_grad_norm_(params, args.clip))
            opt.step()
            step += 1
            train_s += time.time() - ts
            ema = lv if ema is None else 0.9 * ema + 0.1 * lv
            history.append({"step": step, "loss": round(lv, 5), "attention": "full" if full_step else "pod",
                            "gnorm": round(gnorm, 4), "lr": cur, "train_minutes": round(train_s / 60, 4)})
            if step <= 3 or step % 10 == 0:
                log(f"step {step} loss {lv:.4f} ({'full' if full_step else 'pod'}; ema {ema:.4f}) gnorm {gnorm:.2f} "
                    f"lr {cur:.2e} {batch * seq_len * step / max(1e-9, train_s):.0f} tok/s "
                    f"{100 * progress(step, train_s):.0f}%")
            due = (train_s - last_eval_s) / 60 >= eval_every if budget_s else step % max(1, int(eval_every)) == 0
            if due:
                do_eval(step, train_s)
                last_eval_s = train_s
    except RuntimeError as e:
        if "out of memory" in str(e).lower():
            die(f"out of memory with --batch {batch} x --seq-len {seq_len}: retry with a smaller --batch", 4)
        raise
    if evals[-1]["step"] != step:
        do_eval(step, train_s)

    # -- the kept weights -> GGUF --
    model.load_state_dict(best["state"])
    if args.method == "lora":
        merge_lora(model)
    model.to("cpu").float().eval()
    out_adapter = args.out_adapter or os.path.splitext(args.out)[0] + "-pod.gguf"
    summary_path = args.summary or os.path.splitext(args.out)[0] + ".json"
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    prov = {"base": os.path.basename(args.model), "adapter": os.path.basename(args.adapter), "method": args.method,
            "share": share, "steps": step, "kept_step": best["step"]}
    try:
        write_model(model, cfg, g, args.out, ftype, prov)
    except (ValueError, OSError) as e:
        die(f"could not write {args.out}: {e}", 1)
    pc.share = share
    try:
        pc.save_gguf(out_adapter, ei_adapter=ei, name=f"edgeinf-pod-adapter for {os.path.basename(args.out)}")
    except (ValueError, OSError) as e:
        die(f"could not write {out_adapter}: {e}", 1)

    # -- checks: the output re-loads, same tokenizer keys, logits close to the trained model's --
    g2 = read_gguf(args.out)
    back, cfg2, _ = load_gguf(g2, dtype=torch.float32)
    tok_same = all(k in g2.metadata and np.array_equal(np.asarray(g2.metadata[k], dtype=object),
                                                       np.asarray(g.metadata[k], dtype=object))
                   for k in g.metadata if k.startswith("tokenizer."))
    probe = torch.stack(rows_val[:1])[:, :min(seq_len, 256)]
    with torch.no_grad():
        d = float((model(probe, policy=policy) - back(probe, policy=policy)).abs().max())
        d_base = float((model(probe) - load_gguf(g, dtype=torch.float32)[0](probe)).abs().max())
    pc2, _ = load_pod_gguf(out_adapter, cfg2)
    ok_reload = cfg2.to_dict() == cfg.to_dict() and tok_same and d <= TOLERANCE[ftype] and \
        pc2.block_starts == pc.block_starts and pc2.share == share
    be = best["eval"]
    e0 = evals[0]
    summary = {
        "model": args.model, "adapter": args.adapter, "out": args.out, "out_adapter": out_adapter,
        "device": str(device), "hardware": torch.cuda.get_device_name(0) if cuda else
        f"CPU, {torch.get_num_threads()} threads", "bf16": use_bf16, "type": ftype,
        "policy": policy.describe(), "method": args.method, "rank": args.rank if args.method == "lora" else None,
        "lora_targets": args.lora_targets if args.method == "lora" else None, "lr": lr, "batch": batch,
        "seq_len": seq_len, "trainable_params": n_train, "base_params": n_base, "steps": step,
        "tokens": step * batch * seq_len, "train_minutes": round(train_s / 60, 2),
        "total_minutes": round((time.time() - t_start) / 60, 2), "validation_rows": len(rows_val),
        "before": {"val_ppl_pod": e0["val_ppl_pod"], "val_ppl_full": e0["val_ppl_full"]},
        "kept": {"step": best["step"], "val_ppl_pod": be["val_ppl_pod"], "val_ppl_full": be["val_ppl_full"]},
        "evals": evals, "history": history, "reload": {"ok": ok_reload, "max_abs_logit_diff": d,
                                                       "tolerance": TOLERANCE[ftype], "tokenizer_keys_equal": tok_same,
                                                       "trained_vs_base_max_abs_logit_diff": d_base},
        "args": vars(args), "command": "models/train_pod.py " + " ".join(sys.argv[1:] if argv is None else argv),
    }
    with open(summary_path, "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=1)
    log(f"done: {step} steps, {summary['train_minutes']} min; kept step {best['step']}: val ppl pod "
        f"{e0['val_ppl_pod']:.3f} -> {be['val_ppl_pod']:.3f}, full {e0['val_ppl_full']:.3f} -> {be['val_ppl_full']:.3f}")
    log(f"wrote {args.out} ({os.path.getsize(args.out):,} B), {out_adapter}, {summary_path}; re-load max |logit diff| "
        f"{d:.2e} (tolerance {TOLERANCE[ftype]:g}), tokenizer keys {'equal' if tok_same else 'DIFFER'}")
    if not ok_reload:
        die("the written GGUF does not re-load to the trained model (see the summary's reload section)", 1)
    if args.smoke:
        if not history or not all(math.isfinite(h["loss"]) for h in history):
            die("smoke: a loss is not finite", 1)
        print("pod-train-smoke: python checks ok", flush=True)
    return summary


if __name__ == "__main__":
    main()
