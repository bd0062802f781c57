#!/usr/bin/python3
"""Train the EdgeInfinite memory-gating adapter of a frozen base Llama GGUF (docs/edgeinfinite.md, DESIGN.md §3.3).

Only the adapter trains (gate per layer and query head + rank-r low-rank adapters on the memory keys, values and
queries; at most --max-params-frac of the base's parameters, rank chosen to fit when --rank auto). The base GGUF is
loaded with the reference (dequantized weights), frozen, never modified. Sequences run through the reference's
batched edgeinfinite path (routing on, exactly what the engine computes), memory in fp32 (bf16 autocast on CUDA).

Data, one mixed batch per step:
  * passkey rows (the standard task): instruction, filler "The grass is green. ..." repeated, the line "The pass
    key is NNNNN. Remember it. NNNNN is the pass key." at a random depth (biased towards depths that are already
    compressed into memory when the question comes), ending "What is the pass key? The pass key is"; the loss is on
    the answer tokens only;
  * windows of long documents of the corpus (models/corpus/build.py: train.jsonl / val.jsonl), LM loss on the
    positions where memory is in use (>= n_sink + window + seg; before that the output is the base model's).
  * distillation (--distill-weight, on --distill-frac of the steps, rows no longer than the model's context): at
    every layer and head the base's own full attention splits exactly into λ·A_ev + (1-λ)·A_cache (A_ev: softmax
    over the evicted tokens, λ: their probability mass), the same form as g·A_mem + (1-g)·A_local; the memory read
    is pulled towards A_ev and the gate towards λ (class Distiller). Without it the answer loss alone did not teach
    retrieval: on the default model, 1,437 GPU steps left memory-hit accuracy at 0 while the gates closed; with it,
    ~360 steps reached 1.0 (models/README.md).
Length curriculum: from just beyond the cache budget up to --max-len over the first 70% of the run.
Optimiser: AdamW, no weight decay; gate lr --gate-lr (1e-2: gates stall at lower rates), low-rank lr --lr (1e-2),
gradient clipping, short warmup, cosine decay to 10%.
Validation (every --eval-every): passkey accuracy by depth bin and by where the key is when the question comes
(memory / window / split), and the document LM loss; the checkpoint with the best memory-hit accuracy (ties: lower
answer loss) is written to --out as it is found. The summary JSON has the curves, the baselines (streaming with the
same cache budget, and full attention where the length fits the model's context) and the parameter counts.

  /usr/bin/python3 models/train_adapter.py --model models/edgeinf-default-q8_0.gguf --out models/edgeinf-default.adapter.gguf --time-budget 60
  make adapter MODEL=... OUT=...          make adapter-smoke     (mk/adapter.mk)
"""
from __future__ import annotations

import argparse
import copy
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
import torch.nn.functional as F  # noqa: E402

from edgeinf_ref.adapter import EdgeInfAdapter, load_adapter_gguf  # noqa: E402
from edgeinf_ref.attention import EdgeInfinitePolicy, StreamingPolicy, expand_kv  # noqa: E402
from edgeinf_ref.export import load_gguf  # noqa: E402
from edgeinf_ref.gguf import read_gguf  # noqa: E402

PASSKEY_INTRO = ("There is an important info hidden inside a lot of irrelevant text. Find it and memorize them. "
                 "I will quiz you about the important information there.")
PASSKEY_FILLER = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."
PASSKEY_QUESTION = "What is the pass key? The pass key is"
DEPTH_BINS = 5


def die(msg, code=2):
    print(f"train_adapter: {msg}", file=sys.stderr, flush=True)
    sys.exit(code)


def log(msg):
    print(f"[adapter] {msg}", flush=True)


# ----------------------------------------------------------------------------------------------------------
# data
# ----------------------------------------------------------------------------------------------------------

class Passkey:
    """Builds passkey rows at a target length and key depth; tokenizes the whole text (as an evaluation would)."""

    def __init__(self, sp):
        self.sp = sp
        self.bos = sp.bos_id()
        one, ten = (len(sp.encode(" ".join([PASSKEY_FILLER] * n))) for n in (1, 11))
        self.per_filler = max(1.0, (ten - one) / 10)
        self.fixed = 1 + len(sp.encode(PASSKEY_INTRO)) + len(sp.encode(self.key_line(12345))) + \
            len(sp.encode(PASSKEY_QUESTION)) + 6

    @staticmethod
    def key_line(key):
        return f"The pass key is {key}. Remember it. {key} is the pass key."

    def row(self, rng, length, depth):
        """(input ids, answer ids, key line [start, end) token positions, depth) for about `length` tokens (the
        filler count is corrected once after a first tokenization)."""
        key = rng.randint(10000, 99999)
        n_fill = max(1, int((length - self.fixed) / self.per_filler))
        r = self._build(key, n_fill, depth)
        n_fill2 = max(1, n_fill + int(round((length - len(r[0]) - len(r[1])) / self.per_filler)))
        return r if n_fill2 == n_fill else self._build(key, n_fill2, depth)

    def _build(self, key, n_fill, depth):
        n1 = min(n_fill, max(0, int(round(depth * n_fill))))
        before = " ".join([PASSKEY_INTRO] + [PASSKEY_FILLER] * n1)
        prompt = " ".join([before, self.key_line(key)] + [PASSKEY_FILLER] * (n_fill - n1) + [PASSKEY_QUESTION])
        ids = [self.bos] + self.sp.encode(prompt)
        full = [self.bos] + self.sp.encode(prompt + " " + str(key))
        if full[:len(ids)] != ids:
            raise RuntimeError("the tokenizer merges the answer into the question; cannot isolate answer tokens")
        ks = 1 + len(self.sp.encode(before))
        ke = 1 + len(self.sp.encode(before + " " + self.key_line(key)))
        return ids, full[len(ids):], (ks, ke), n1 / n_fill

    def row_at_token(self, rng, length, key_pos):
        """A row whose key line starts near token position key_pos."""
        n_fill = max(1, int((length - self.fixed) / self.per_filler))
        intro = 1 + len(self.sp.encode(PASSKEY_INTRO))
        return self.row(rng, length, min(1.0, max(0.0, (key_pos - intro) / (self.per_filler * n_fill))))


def key_location(layout, key_span, ans_pos):
    """Where the key line is when the first answer token is predicted (at position ans_pos): 'memory' (every token
    evicted), 'window' (every token still in the cache: sinks or the last W+1 segments) or 'split'."""
    ks, ke = key_span
    if ans_pos < layout.n_sink:
        return "window"
    j = layout.segment(ans_pos)
    p_fw = layout.n_sink + max(0, j - layout.W) * layout.seg

    def cached(p):
        return p < layout.n_sink or p >= p_fw
    c = [cached(p) for p in range(ks, ke)]
    return "window" if all(c) else ("memory" if not any(c) else "split")


def load_documents(sp, corpus, split, min_tokens, max_docs=400, seed=0):
    """Token lists (BOS + text) of the corpus documents with at least min_tokens tokens. corpus: a directory with
    <split>.jsonl (models/corpus/build.py), a .txt file (one document), or 'none'."""
    if corpus in (None, "", "none"):
        return []
    texts = []
    if os.path.isdir(corpus):
        path = os.path.join(corpus, f"{split}.jsonl")
        if not os.path.exists(path):
            die(f"{path} not found: build the corpus with `/usr/bin/python3 models/corpus/build.py`, or pass "
                f"--corpus FILE.txt / --corpus none")
        with open(path, encoding="utf-8") as f:
            texts = [json.loads(line)["text"] for line in f]
    elif os.path.isfile(corpus):
        with open(corpus, encoding="utf-8") as f:
            texts = [f.read()]
    else:
        die(f"--corpus {corpus}: no such file or directory")
    # cheap pre-filter by characters (>= ~2 chars per token), then tokenize; longest first, capped
    texts = sorted((t for t in texts if len(t) >= 2 * min_tokens), key=len, reverse=True)[:max_docs]
    docs = []
    for t in texts:
        ids = [sp.bos_id()] + sp.encode(t)
        if len(ids) >= min_tokens:
            docs.append(np.asarray(ids, dtype=np.int64))
    random.Random(seed).shuffle(docs)
    return docs


class DocSampler:
    """Random windows of long documents, drawn in proportion to document length (among those long enough)."""

    def __init__(self, docs, rng):
        self.docs, self.rng = docs, rng

    def window(self, n):
        ok = [d for d in self.docs if len(d) >= n]
        if not ok:
            return None
        d = self.rng.choices(ok, weights=[len(x) for x in ok])[0]
        i = self.rng.randrange(0, len(d) - n + 1)
        return d[i:i + n]


def pad_batch(rows, pad_id=0):
    """rows: [(ids list/array, targets list/array with -100 = no loss)] -> (x (B,T), y (B,T)) right-padded."""
    T = max(len(r[0]) for r in rows)
    x = torch.full((len(rows), T), pad_id, dtype=torch.long)
    y = torch.full((len(rows), T), -100, dtype=torch.long)
    for i, (ids, tgt) in enumerate(rows):
        x[i, :len(ids)] = torch.as_tensor(np.asarray(ids, dtype=np.int64))
        y[i, :len(tgt)] = torch.as_tensor(np.asarray(tgt, dtype=np.int64))
    return x, y


def passkey_example(pk, rng, layout, length, mem_bias):
    """Training row: input = prompt + answer[:-1], targets only on the answer tokens. With probability mem_bias the
    key is placed where it will have been compressed into memory when the question comes."""
    if rng.random() < mem_bias:
        # evicted region at the answer position: [n_sink, p_fw); aim the key line inside it
        j = layout.segment(length)
        p_fw = layout.n_sink + max(0, j - layout.W) * layout.seg
        hi = max(layout.n_sink + 1, p_fw - 40)
        ids, ans, span, depth = pk.row_at_token(rng, length, rng.uniform(layout.n_sink, hi))
    else:
        ids, ans, span, depth = pk.row(rng, length, rng.random())
    x = ids + ans[:-1]
    y = [-100] * (len(ids) - 1) + ans
    return x, y, span


def dilution_weights(layout, span, T, r):
    """Per-segment compression weights (memory.compress) for a passkey row of T tokens whose key line is at
    token span [ks, ke): 1 for the segments holding part of it, r for the filler segments, so that each filler
    segment stands for r like it and the row's memory is that of a row about r times longer (--dilute)."""
    ks, ke = span
    n = max(1, -(-(T - layout.n_sink) // layout.seg))
    w = []
    for e in range(n):
        a = layout.n_sink + e * layout.seg
        w.append(1.0 if a < ke and a + layout.seg > ks else float(r))
    return w


def doc_example(sampler, length, budget):
    w = sampler.window(length + 1)
    if w is None:
        return None
    y = w[1:].copy()
    y[:max(0, budget - 1)] = -100    # loss only where memory is in use (position >= budget predicts y[pos])
    return w[:-1], y


class Distiller:
    """Layer-local teacher for the memory and the gate (--distill-weight; rows no longer than the model's context).

    At every layer and query head the base model's own full causal softmax over all earlier tokens splits into the
    part over tokens still in the cache and the part over evicted tokens: full = λ·A_ev + (1-λ)·A_cache, where A_ev is
    the softmax restricted to the evicted tokens and λ their share of the probability mass. That is exactly the form
    of EdgeInfinite's output g·A_mem + (1-g)·A_local, so the memory read is pulled towards A_ev (squared error
    weighted by λ, relative to |A_ev|²) and the gate towards λ (cross-entropy). Both targets come from the same
    forward pass (the student's own q/k/v at that layer), so there is no second model and no cross-layer drift.
    Installed as EdgeInfinitePolicy.probe for a training step; loss() sums the layers' terms."""

    def __init__(self, layout):
        self.lay = layout
        self.lengths = None
        self.reset()

    def reset(self):
        self.mem_num, self.mem_den, self.gate_sum, self.gate_n = 0.0, 0.0, 0.0, 0.0
        self.lam_sum = 0.0

    def targets(self, call, ns):
        """(λ (B, H, L), A_ev (B, H, L, D)) for the non-sink positions ns..T-1 of a batched call from position 0:
        the share of the full causal softmax mass on evicted tokens and the softmax restricted to them (0 where
        nothing is evicted yet). Standard RoPE positions, float32 (float64 if the call is)."""
        lay = self.lay
        S, W = lay.seg, lay.W
        H, T = call.q0.shape[1], call.q0.shape[2]
        dev = call.q0.device
        dt = torch.float64 if call.q0.dtype == torch.float64 else torch.float32
        with torch.no_grad():
            q = call.rope.apply(call.q0[:, :, ns:], call.pos[ns:]).to(dt)
            k = expand_kv(call.rope.apply(call.k0, call.pos), H).to(dt)
            v = expand_kv(call.v, H).to(dt)
            s = torch.matmul(q, k.transpose(-1, -2)) * call.scale                   # (B, H, L, T)
            p = torch.arange(ns, T)
            t = torch.arange(T)
            p_fw = ns + torch.clamp((p - ns) // S - W, min=0) * S                  # oldest cached non-sink position
            causal = (t[None, :] <= p[:, None]).to(dev)
            ev = ((t[None, :] >= ns) & (t[None, :] < p_fw[:, None])).to(dev)
            lse_all = torch.logsumexp(s.masked_fill(~causal, float("-inf")), -1)
            s_ev = s.masked_fill(~ev, float("-inf"))
            lam = torch.exp(torch.logsumexp(s_ev, -1) - lse_all).nan_to_num(0.0)
            a_ev = torch.matmul(torch.softmax(s_ev, -1).nan_to_num(0.0), v)
        return lam, a_ev

    def __call__(self, call, ns, a_mem, gate, use):
        B, H, T = call.q0.shape[0], call.q0.shape[1], call.q0.shape[2]
        L = T - ns
        dev = a_mem.device
        lam, a_ev = self.targets(call, ns)
        with torch.no_grad():
            valid = use.view(1, 1, L).to(dev).to(lam.dtype).expand(B, H, L)
            if self.lengths is not None:
                p = torch.arange(ns, T)
                valid = valid * (p[None, :].to(dev) < self.lengths.to(dev)[:, None]).to(lam.dtype)[:, None, :]
        w = lam * valid
        err = ((a_mem.to(lam.dtype) - a_ev) ** 2).sum(-1)
        self.mem_num = self.mem_num + (w * err).sum()
        self.mem_den = self.mem_den + (w * (a_ev ** 2).sum(-1)).sum()
        g = gate.squeeze(-1).to(lam.dtype).clamp(1e-6, 1 - 1e-6)
        bce = -(lam * torch.log(g) + (1 - lam) * torch.log1p(-g))
        self.gate_sum = self.gate_sum + (bce * valid).sum()
        self.gate_n = self.gate_n + valid.sum()
        self.lam_sum = self.lam_sum + float((lam * valid).sum())

    def loss(self):
        """(memory term, gate term, mean λ) of the layers seen since reset(); zeros when no position read memory."""
        if not torch.is_tensor(self.gate_n) or float(self.gate_n) == 0:
            z = torch.zeros(())
            return z, z, 0.0
        mem = self.mem_num / self.mem_den.clamp(min=1e-9)
        return mem, self.gate_sum / self.gate_n, self.lam_sum / float(self.gate_n)


# ----------------------------------------------------------------------------------------------------------
# evaluation
# ----------------------------------------------------------------------------------------------------------

def make_val_set(pk, layout, lengths, n_rows, seed):
    """Fixed validation rows: for each length, depths evenly spaced over [0, 1]."""
    rng = random.Random(seed)
    rows = []
    per = max(1, n_rows // len(lengths))
    for L in lengths:
        for i in range(per):
            depth = i / max(1, per - 1)
            ids, ans, span, d = pk.row(rng, L, depth)
            rows.append({"ids": ids, "ans": ans, "span": span, "depth": d, "length": L,
                         "where": key_location(layout, span, len(ids) - 1)})
    return rows


@torch.no_grad()
def eval_passkey(model, policy, rows, device, autocast, batch, dilute=0, preds=None):
    """Teacher-forced greedy check of the answer tokens (a hit = every answer token is the argmax, i.e. greedy
    decoding would write the key). dilute > 0: filler segments weigh that much in memory (dilution_weights).
    Returns per-row (hit, loss) lists; a list given as preds receives each row's argmax answer ids."""
    hits, losses = [], []
    for i in range(0, len(rows), batch):
        chunk = rows[i:i + batch]
        x, y = pad_batch([(r["ids"] + r["ans"][:-1], [-100] * (len(r["ids"]) - 1) + r["ans"]) for r in chunk])
        x, y = x.to(device), y.to(device)
        if dilute:
            policy.seg_weight = torch.tensor([dilution_weights(policy.layout, r["span"], x.shape[1], dilute)
                                              for r in chunk])
        try:
            with autocast():
                lg = model(x, policy=policy)
        finally:
            if dilute:
                policy.seg_weight = None
        lg = lg.float()
        for b, r in enumerate(chunk):
            m = y[b] != -100
            pred = lg[b][m].argmax(-1)
            if preds is not None:
                preds.append(pred.tolist())
            hits.append(bool((pred == y[b][m]).all()))
            losses.append(float(F.cross_entropy(lg[b][m], y[b][m])))
    return hits, losses


def summarize_passkey(rows, hits, losses):
    """Accuracy overall, by key location (memory / window / split) and by depth bin; mean answer loss."""
    out = {"acc": float(np.mean(hits)) if hits else 0.0, "loss": float(np.mean(losses)) if losses else 0.0,
           "n": len(hits)}
    for where in ("memory", "window", "split"):
        sel = [h for h, r in zip(hits, rows) if r["where"] == where]
        sl = [l for l, r in zip(losses, rows) if r["where"] == where]
        out[f"acc_{where}"] = float(np.mean(sel)) if sel else None
        out[f"loss_{where}"] = float(np.mean(sl)) if sl else None
        out[f"n_{where}"] = len(sel)
    bins = []
    for k in range(DEPTH_BINS):
        lo, hi = k / DEPTH_BINS, (k + 1) / DEPTH_BINS
        sel = [(h, r["where"]) for h, r in zip(hits, rows) if lo <= r["depth"] < hi or (k == DEPTH_BINS - 1 and r["depth"] == 1.0)]
        bins.append({"depth": f"{int(lo * 100)}-{int(hi * 100)}%", "n": len(sel),
                     "acc": float(np.mean([h for h, _ in sel])) if sel else None,
                     "memory": sum(w == "memory" for _, w in sel)})
    out["by_depth"] = bins
    by_len = {}
    for h, r in zip(hits, rows):
        by_len.setdefault(r["length"], []).append(h)
    out["by_length"] = {str(k): float(np.mean(v)) for k, v in sorted(by_len.items())}
    return out


@torch.no_grad()
def eval_docs(model, policy, docs, device, autocast, batch):
    """Mean LM loss over the validation document windows (positions >= budget only)."""
    tot, n = 0.0, 0
    for i in range(0, len(docs), batch):
        x, y = pad_batch(docs[i:i + batch])
        x, y = x.to(device), y.to(device)
        with autocast():
            lg = model(x, policy=policy)
        l = F.cross_entropy(lg.float().reshape(-1, lg.shape[-1]), y.reshape(-1), ignore_index=-100, reduction="sum")
        tot += float(l)
        n += int((y != -100).sum())
    return tot / max(1, n)


# ----------------------------------------------------------------------------------------------------------
# main
# ----------------------------------------------------------------------------------------------------------

def choose_rank(cfg, base_params, frac, requested):
    """The requested rank, or (auto) the largest rank <= 16 whose adapter fits frac * base_params."""
    def count(r):
        return EdgeInfAdapter.for_model(cfg, rank=r).n_params()
    if requested != "auto":
        return int(requested)
    best = None
    for r in range(0, 17):
        if count(r) <= frac * base_params:
            best = r
    if best is None:
        die(f"even a gate-only adapter ({count(0)} params) exceeds {frac:.2%} of the base's {base_params} params")
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="base model GGUF (frozen)")
    ap.add_argument("--out", required=True, help="adapter GGUF to write (the best checkpoint)")
    ap.add_argument("--summary", default=None, help="JSON summary (default: OUT with .json)")
    ap.add_argument("--tokenizer", default=None, help="sentencepiece .model (default: rebuilt from the GGUF)")
    ap.add_argument("--corpus", default=os.path.join(HERE, "work", "corpus"),
                    help="corpus dir (train.jsonl/val.jsonl), a .txt file, or 'none'")
    ap.add_argument("--n-sink", type=int, default=16)
    ap.add_argument("--window", type=int, default=256)
    ap.add_argument("--seg", type=int, default=64)
    ap.add_argument("--eps", type=float, default=1e-6)
    ap.add_argument("--init", default=None, help="start from this adapter GGUF (its rank and layout win)")
    ap.add_argument("--rank", default="auto", help="low-rank adapter rank, or auto (largest within the budget)")
    ap.add_argument("--max-params-frac", type=float, default=0.01)
    ap.add_argument("--gate-bias", type=float, default=-3.0, help="initial gate bias (sigmoid(-3) = 0.05)")
    ap.add_argument("--gate-lr", type=float, default=1e-2)
    ap.add_argument("--lr", type=float, default=1e-2, help="low-rank adapters' learning rate")
    ap.add_argument("--clip", type=float, default=1.0)
    ap.add_argument("--warmup", type=float, default=0.03, help="fraction of the run")
    ap.add_argument("--batch", type=int, default=0, help="rows per step (default 4 on CPU, 16 on CUDA)")
    ap.add_argument("--passkey-frac", type=float, default=0.5, help="fraction of each batch that is passkey rows")
    ap.add_argument("--mem-bias", type=float, default=0.7, help="P(passkey key placed in the compressed region)")
    ap.add_argument("--doc-weight", type=float, default=0.5, help="weight of the document LM loss")
    ap.add_argument("--distill-weight", type=float, default=3.0,
                    help="weight of the layer-local distillation of memory and gate towards the base model's own "
                         "attention over evicted tokens (class Distiller); 0 = off")
    ap.add_argument("--distill-frac", type=float, default=0.5,
                    help="fraction of steps that are distillation steps (rows no longer than the model's context)")
    ap.add_argument("--dilute", type=float, default=0,
                    help="virtual length: on passkey rows of non-distillation steps each filler segment weighs up to "
                         "this much in memory (log-uniform per row), as if the row were that much longer; 0 = off")
    ap.add_argument("--dilute-frac", type=float, default=0.75, help="fraction of those steps that dilute")
    ap.add_argument("--val-dilute", type=float, default=-1,
                    help="also check the memory passkey rows at this weight (default: --dilute; 0 = no)")
    ap.add_argument("--min-len", type=int, default=0, help="curriculum start (default: budget + 2 segments)")
    ap.add_argument("--max-len", type=int, default=0, help="curriculum end (default: max(8192, 4 x budget))")
    ap.add_argument("--curriculum", type=float, default=0.7, help="fraction of the run to reach --max-len")
    ap.add_argument("--time-budget", type=float, default=0, help="minutes of training")
    ap.add_argument("--steps", type=int, default=0, help="step budget when no --time-budget")
    ap.add_argument("--eval-every", type=float, default=0, help="minutes (with --time-budget) or steps")
    ap.add_argument("--val-rows", type=int, default=40)
    ap.add_argument("--val-docs", type=int, default=8)
    ap.add_argument("--val-lengths", default="", help="comma-separated passkey lengths (default: max-len, and "
                                                      "min-len if different)")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--smoke", action="store_true", help="exit 1 unless the loss is finite and the GGUF re-loads")
    args = ap.parse_args()
    if args.dilute < 0 or not 0 <= args.dilute_frac <= 1:
        die(f"--dilute must be >= 0 (0 or 1 = off) and --dilute-frac in [0, 1] (got {args.dilute:g}, "
            f"{args.dilute_frac:g})")

    t_start = time.time()
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.device == "cuda" and not torch.cuda.is_available():
        die("--device cuda but CUDA is not available")
    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(max(1, args.threads))
    use_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()

    def autocast():
        if use_bf16:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return torch.autocast("cpu", enabled=False) if hasattr(torch, "autocast") else _Null()

    # -- base model, tokenizer --
    if not os.path.exists(args.model):
        die(f"model {args.model} not found")
    g = read_gguf(args.model)
    model, cfg, _ = load_gguf(g, dtype=torch.float32)
    model.to(device)
    for p in model.parameters():
        p.requires_grad_(False)
    base_params = sum(int(np.prod(t.ne)) for t in g.tensors.values())
    if args.tokenizer:
        import sentencepiece as spm
        sp = spm.SentencePieceProcessor(model_file=args.tokenizer)
    else:
        from edgeinf_ref.spm_proto import processor_from_gguf
        try:
            sp = processor_from_gguf(g)
        except ValueError as e:
            die(str(e))
    if sp.get_piece_size() > cfg.vocab_size:
        die(f"tokenizer has {sp.get_piece_size()} pieces, the model {cfg.vocab_size}")

    # -- layout and adapter --
    if args.window % args.seg:
        die(f"--window {args.window} is not a multiple of --seg {args.seg}")
    if args.init:
        try:
            adapter = load_adapter_gguf(args.init, cfg).to(device)
        except (ValueError, OSError) as e:
            die(f"--init {args.init}: {e}")
        rank = adapter.rank
        args.n_sink, args.window, args.seg, args.eps = adapter.n_sink, adapter.window, adapter.seg, adapter.eps
    else:
        rank = choose_rank(cfg, base_params, args.max_params_frac, args.rank)
        gen = torch.Generator().manual_seed(args.seed)
        adapter = EdgeInfAdapter.for_model(cfg, rank=rank, n_sink=args.n_sink, window=args.window, seg=args.seg,
                                           eps=args.eps, gate_bias=args.gate_bias, generator=gen).to(device)
    budget = args.n_sink + args.window + args.seg
    if budget > cfg.max_seq_len:
        die(f"n_sink + window + seg = {budget} exceeds the model's context {cfg.max_seq_len}: attention would see "
            f"positions it was never trained on; pass smaller --window/--seg")
    n_ad = adapter.n_params()
    frac = n_ad / base_params
    log(f"base {args.model}: {base_params:,} params, dim {cfg.dim}, {cfg.n_layers} layers, {cfg.n_heads} heads "
        f"({cfg.n_kv_heads} kv), ctx {cfg.max_seq_len}; device {device}{' bf16' if use_bf16 else ''}")
    log(f"adapter: rank {rank}, {n_ad:,} trainable params = {frac:.3%} of the base "
        f"(gate {sum(p.numel() for p in adapter.gate_params()):,}, low-rank "
        f"{sum(p.numel() for p in adapter.lowrank_params()):,}); layout n_sink {args.n_sink} window {args.window} "
        f"seg {args.seg} (cache budget {budget})")
    if frac > args.max_params_frac + 1e-12:
        die(f"adapter has {frac:.3%} of the base's parameters, more than --max-params-frac {args.max_params_frac}")
    policy = EdgeInfinitePolicy(args.n_sink, args.window, args.seg, adapter, routing=True)
    streaming = StreamingPolicy(args.n_sink, args.window, args.seg)

    min_len = args.min_len or budget + 2 * args.seg
    max_len = max(min_len, args.max_len or max(8192, 4 * budget))
    val_lengths = [int(x) for x in args.val_lengths.split(",") if x] or sorted({min_len, max_len})
    batch = args.batch or (16 if device.type == "cuda" else 4)

    pk = Passkey(sp)
    docs = load_documents(sp, args.corpus, "train", min_len + 1, seed=args.seed)
    val_docs_src = load_documents(sp, args.corpus, "val", max_len + 1, seed=args.seed + 1) if os.path.isdir(
        args.corpus or "") else docs
    sampler = DocSampler(docs, rng)
    log(f"data: {len(docs)} training documents >= {min_len + 1} tokens; curriculum {min_len} -> {max_len} tokens; "
        f"batch {batch} ({args.passkey_frac:.0%} passkey)")
    val_rows = make_val_set(pk, policy.layout, val_lengths, args.val_rows, args.seed + 99)
    vs = DocSampler(val_docs_src, random.Random(args.seed + 7))
    val_docs = [e for e in (doc_example(vs, max_len, budget) for _ in range(args.val_docs)) if e is not None]
    where = {w: sum(r["where"] == w for r in val_rows) for w in ("memory", "window", "split")}
    log(f"validation: {len(val_rows)} passkey rows at {val_lengths} tokens (key in memory {where['memory']}, "
        f"window {where['window']}, split {where['split']}), {len(val_docs)} document windows of {max_len}")

    # -- baselines --
    eval_batch = max(1, batch // 2) if device.type == "cpu" else batch
    t0 = time.time()
    model.eval()
    h, l = eval_passkey(model, streaming, val_rows, device, autocast, eval_batch)
    baselines = {"streaming": summarize_passkey(val_rows, h, l)}
    if val_docs:
        baselines["streaming"]["doc_loss"] = eval_docs(model, streaming, val_docs, device, autocast, eval_batch)
    fit = [r for r in val_rows if len(r["ids"]) + len(r["ans"]) <= cfg.max_seq_len]
    if fit:
        h, l = eval_passkey(model, None, fit, device, autocast, eval_batch)
        baselines["full_where_it_fits"] = summarize_passkey(fit, h, l)
    log(f"baseline streaming: passkey {baselines['streaming']['acc']:.2f} (memory "
        f"{baselines['streaming']['acc_memory']}, window {baselines['streaming']['acc_window']}), doc loss "
        f"{baselines['streaming'].get('doc_loss', float('nan')):.4f}" +
        (f"; full (rows <= ctx): {baselines['full_where_it_fits']['acc']:.2f}" if fit else "") +
        f" ({time.time() - t0:.1f}s)")

    # -- optimiser --
    groups = [{"params": adapter.gate_params(), "lr": args.gate_lr, "weight_decay": 0.0, "base_lr": args.gate_lr}]
    if rank:
        groups.append({"params": adapter.lowrank_params(), "lr": args.lr, "weight_decay": 0.0, "base_lr": args.lr})
    opt = torch.optim.AdamW(groups, betas=(0.9, 0.95))
    if not args.time_budget and not args.steps:
        args.steps = 200
    eval_every = args.eval_every or (max(1.0, args.time_budget / 10) if args.time_budget else max(1, args.steps // 5))
    t_train = time.time()

    def progress(step):
        if args.time_budget:
            return min(1.0, (time.time() - t_train) / (60 * args.time_budget))
        return min(1.0, step / args.steps)

    def lr_scale(p):
        if p < args.warmup:
            return max(0.05, p / args.warmup)
        q = (p - args.warmup) / max(1e-9, 1 - args.warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * q))

    best = {"score": None}
    history, evals = [], []
    out_dir = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(out_dir, exist_ok=True)
    summary_path = args.summary or os.path.splitext(args.out)[0] + ".json"

    def evaluate(step):
        model.eval()
        te = time.time()
        h, l = eval_passkey(model, policy, val_rows, device, autocast, eval_batch)
        s = summarize_passkey(val_rows, h, l)
        if val_docs:
            s["doc_loss"] = eval_docs(model, policy, val_docs, device, autocast, eval_batch)
        if val_dilute and mem_rows:
            h, l = eval_passkey(model, policy, mem_rows, device, autocast, eval_batch, dilute=val_dilute)
            s["acc_diluted"], s["loss_diluted"], s["n_diluted"] = float(np.mean(h)), float(np.mean(l)), len(h)
        s["step"], s["minutes"] = step, round((time.time() - t_train) / 60, 2)
        with torch.no_grad():
            s["gate_bias_mean"] = float(adapter.gate_b.mean())
        evals.append(s)
        am = s["acc_memory"] if s["acc_memory"] is not None else s["acc"]
        lm = s["loss_memory"] if s["loss_memory"] is not None else s["loss"]
        # With --dilute the memory must also survive the virtual length without breaking the rows whose key is in
        # the window (all rows' accuracy first), and a checkpoint whose document loss is above streaming's (same
        # cache, no memory) only wins when none is below it.
        ok = "doc_loss" not in s or "doc_loss" not in baselines["streaming"] or \
            s["doc_loss"] <= baselines["streaming"]["doc_loss"]
        score = (ok, s["acc"], am, s["acc_diluted"], -s["loss_diluted"]) if "acc_diluted" in s else (am, -lm)
        improved = best["score"] is None or score > best["score"]
        if improved:
            best.update(score=score, step=step, eval=s, state=copy.deepcopy(adapter.state_dict()))
            adapter.save_gguf(args.out, name=f"edgeinf-adapter for {os.path.basename(args.model)}")
        log(f"eval step {step}: passkey {s['acc']:.2f} (memory {s['acc_memory']}, window {s['acc_window']}) "
            f"answer loss {s['loss']:.3f} doc loss {s.get('doc_loss', float('nan')):.4f} gate b {s['gate_bias_mean']:.2f}"
            + (f" diluted x{val_dilute:g}: passkey {s['acc_diluted']:.2f} loss {s['loss_diluted']:.3f}"
               if "acc_diluted" in s else "") +
            f"{' *best*' if improved else ''} ({time.time() - te:.1f}s)")

    val_dilute = args.dilute if args.val_dilute < 0 else args.val_dilute
    mem_rows = [r for r in val_rows if r["where"] == "memory"]
    distiller = Distiller(policy.layout)
    step = 0
    evaluate(0)
    last_eval = time.time() if args.time_budget else 0
    n_pk = max(1, int(round(batch * args.passkey_frac))) if args.passkey_frac > 0 else 0
    while True:
        p = progress(step)
        if (args.time_budget and p >= 1.0) or (not args.time_budget and step >= args.steps):
            break
        model.train()
        cur_max = min_len + (max_len - min_len) * min(1.0, p / max(1e-9, args.curriculum))
        L = rng.randint(min_len, max(min_len, int(cur_max)))
        distill = args.distill_weight > 0 and rng.random() < args.distill_frac
        if distill:   # the teacher is the base's own full attention: stay inside its trained context
            L = rng.randint(min_len, max(min_len, cfg.max_seq_len - 16))
        spans = []
        rows_pk = []
        for _ in range(n_pk):
            xr, yr, span = passkey_example(pk, rng, policy.layout, L, args.mem_bias)
            rows_pk.append((xr, yr))
            spans.append(span)
        rows_doc, is_doc = [], [False] * len(rows_pk)
        for _ in range(batch - n_pk):
            e = doc_example(sampler, L, budget) if docs else None
            is_doc.append(e is not None)   # no document that long: one more passkey row instead
            if e is None:
                xr, yr, span = passkey_example(pk, rng, policy.layout, L, args.mem_bias)
                e = (xr, yr)
            rows_doc.append(e)
        x, y = pad_batch(rows_pk + rows_doc)
        x, y = x.to(device), y.to(device)
        diluted = args.dilute > 1 and not distill and rng.random() < args.dilute_frac
        if diluted:   # documents keep weight 1: only the passkey rows stand for longer ones
            ws = [dilution_weights(policy.layout, sp_, x.shape[1], math.exp(rng.uniform(0, math.log(args.dilute))))
                  for sp_ in spans]
            n_w = len(ws[0]) if ws else 1
            ws += [[1.0] * n_w for _ in range(x.shape[0] - len(ws))]
            policy.seg_weight = torch.tensor(ws)
        for gp in opt.param_groups:
            gp["lr"] = gp["base_lr"] * lr_scale(p)
        if distill:
            distiller.reset()
            distiller.lengths = torch.tensor([len(r[0]) for r in rows_pk + rows_doc])
            policy.probe = distiller
        try:
            with autocast():
                lg = model(x, policy=policy)
        finally:
            policy.probe = None
            policy.seg_weight = None
        lg = lg.float()
        ce = F.cross_entropy(lg.reshape(-1, lg.shape[-1]), y.reshape(-1), ignore_index=-100,
                             reduction="none").view(y.shape)
        mask = (y != -100).float()
        dmask = torch.tensor(is_doc, device=device)
        pk_rows = ~dmask
        loss_pk = (ce * mask)[pk_rows].sum() / mask[pk_rows].sum().clamp(min=1)
        loss_doc = (ce * mask)[dmask].sum() / mask[dmask].sum().clamp(min=1) if bool(dmask.any()) else ce.sum() * 0
        loss = loss_pk + args.doc_weight * loss_doc
        d_mem = d_gate = None
        if distill:
            d_mem, d_gate, d_lam = distiller.loss()
            loss = loss + args.distill_weight * (d_mem.to(loss.device) + d_gate.to(loss.device))
        if not torch.isfinite(loss):
            die(f"step {step}: loss is {float(loss)} (not finite)", 1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = float(torch.nn.utils.clip_grad_norm_(adapter.parameters(), args.clip))
        opt.step()
        step += 1
        history.append({"step": step, "len": L, "distill": distill, "diluted": diluted,
                        "loss_passkey": round(float(loss_pk), 4),
                        "loss_doc": round(float(loss_doc), 4), "gnorm": round(gnorm, 4),
                        "distill_mem": None if d_mem is None else round(float(d_mem), 4),
                        "distill_gate": None if d_gate is None else round(float(d_gate), 4),
                        "minutes": round((time.time() - t_train) / 60, 3)})
        if step % 10 == 0 or step <= 3:
            log(f"step {step} len {L} loss passkey {float(loss_pk):.3f} doc {float(loss_doc):.3f} gnorm {gnorm:.2f} "
                + (f"distill mem {float(d_mem):.3f} gate {float(d_gate):.3f} λ {d_lam:.3f} " if d_mem is not None else "")
                + f"lr x{lr_scale(p):.2f} {100 * p:.0f}%")
        due = ((time.time() - last_eval) / 60 >= eval_every) if args.time_budget else (step % int(eval_every) == 0)
        if due:
            evaluate(step)
            last_eval = time.time()
    if not evals or evals[-1]["step"] != step:
        evaluate(step)

    # -- the best checkpoint is in args.out; verify it re-loads into the same numbers --
    adapter.load_state_dict(best["state"])
    back = load_adapter_gguf(args.out, cfg).to(device)
    same = all(torch.equal(a.float(), b.float()) for a, b in zip(adapter.parameters(), back.parameters()))
    summary = {
        "model": args.model, "adapter": args.out, "device": str(device), "bf16": use_bf16,
        "base_params": base_params, "adapter_params": n_ad, "adapter_frac": frac, "rank": rank,
        "adapter_params_gate": sum(p.numel() for p in adapter.gate_params()),
        "adapter_params_lowrank": sum(p.numel() for p in adapter.lowrank_params()),
        "layout": {"n_sink": args.n_sink, "window": args.window, "seg": args.seg, "eps": args.eps, "budget": budget},
        "args": vars(args), "steps": step, "minutes": round((time.time() - t_train) / 60, 2),
        "total_minutes": round((time.time() - t_start) / 60, 2),
        "curriculum": [min_len, max_len], "val_lengths": val_lengths,
        "baselines": baselines, "best": {"step": best["step"], "eval": best["eval"]}, "evals": evals,
        "history": history, "reloaded_equal": same,
        "final_train_loss_passkey": history[-1]["loss_passkey"] if history else None,
    }
    with open(summary_path, "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=1)
    b = best["eval"]
    log(f"done: {step} steps in {summary['minutes']} min; best step {best['step']}: passkey {b['acc']:.2f} "
        f"(memory {b['acc_memory']}, window {b['acc_window']}) vs streaming {baselines['streaming']['acc']:.2f}; "
        f"wrote {args.out} ({os.path.getsize(args.out)} B) and {summary_path}")
    if not same:
        die("the written adapter GGUF does not re-load to the trained values", 1)
    if args.smoke:
        finite = all(math.isfinite(h["loss_passkey"]) and math.isfinite(h["loss_doc"]) for h in history)
        if not finite or not history:
            die("smoke: non-finite loss", 1)
        if args.dilute > 1 and not any(h["diluted"] for h in history):
            die("smoke: --dilute given but no step diluted", 1)
        print("adapter-smoke: ok", flush=True)


class _Null:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


if __name__ == "__main__":
    main()
