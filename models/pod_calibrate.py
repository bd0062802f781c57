#!/usr/bin/python3
"""PoD calibration (docs/pod.md, "Calibration"): measure which consecutive layers attend alike to distant tokens and
group them into blocks.

    /usr/bin/python3 models/pod_calibrate.py --model M.gguf [--corpus DIR|FILE.txt] [--delta 0.8 0.9 ...]
        [--n-sink 16] [--n-recent 128] [--seq-len 1024] [--out-dir build/pod] [--png docs/pod-similarity.png]

1. Runs the reference model (full attention) over calibration windows of --seq-len tokens: held-out documents of the
   corpus (DIR/heldout.jsonl, models/corpus/build.py) or a text file, tokenized with the GGUF's own vocabulary.
2. For --queries sampled query positions per window (each with at least --min-distant distant tokens), every layer
   and query head: the attention distribution over the distant tokens, renormalised over them.
3. Similarity of layers i, j = 1 - JSD(a_i, a_j) / ln 2, averaged over heads (head h with head h) and queries.
4. For each δ: greedy bottom-up blocks (a layer joins the current block while its similarity to the block's anchor is
   >= δ), the KV bytes of pod vs full measured on the reference's caches, and (--eval-windows) the perplexity of full
   and pod (share=scores and share=keys) on other held-out windows.
Writes OUT_DIR/pod-calib.json (everything measured), OUT_DIR/pod-delta<δ>.gguf (a kind "pod" adapter per δ, share =
--share) and the heat map PNG. δ outside (0, 1] is refused (exit 2).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from edgeinf_ref.attention import AttnCall, FullPolicy  # noqa: E402
from edgeinf_ref.export import load_gguf  # noqa: E402
from edgeinf_ref.pod import (PodConfig, PodPolicy, check_delta, distant_mask, kv_bytes_held,  # noqa: E402
                             kv_saving, proximal_mask, softmax_values, starts_from_blocks)

LN2 = math.log(2.0)


def die(msg, code=2):
    print(f"pod_calibrate: {msg}", file=sys.stderr)
    sys.exit(code)


def log(msg):
    print(msg, flush=True)


# ----------------------------------------------------------------------------------------------------------
# The math (tested in models/tests/test_pod.py)
# ----------------------------------------------------------------------------------------------------------

def js_similarity(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """1 - JSD(p, q) / ln 2 over the last dim (distributions; 0 log 0 = 0): 1 for equal, 0 for disjoint supports."""
    m = 0.5 * (p + q)
    jsd = 0.5 * ((torch.xlogy(p, p) - torch.xlogy(p, m)).sum(-1) + (torch.xlogy(q, q) - torch.xlogy(q, m)).sum(-1))
    return 1.0 - jsd.clamp(0.0, LN2) / LN2


def greedy_blocks(sim, delta: float):
    """Bottom-up: layer 0 anchors the first block; layer l joins the current block iff sim[anchor][l] >= delta, else
    it anchors a new block. Raises ValueError for delta outside (0, 1]."""
    delta = check_delta(delta)
    sim = np.asarray(sim)
    blocks = [[0]]
    for l in range(1, sim.shape[0]):
        if sim[blocks[-1][0], l] >= delta:
            blocks[-1].append(l)
        else:
            blocks.append([l])
    return blocks


# ----------------------------------------------------------------------------------------------------------
# Recording distant-token attention
# ----------------------------------------------------------------------------------------------------------

class DistantRecorder(FullPolicy):
    """Full attention that also records, for the query positions `qpos`, each layer's attention distribution over the
    distant tokens (softmax of the full logits restricted to them), the share of the full attention they get, and the
    rotated sampled queries and all rotated keys (float64) for the share=keys criterion."""
    name = "full+record"

    def __init__(self, n_sink: int, n_recent: int, qpos: torch.Tensor):
        self.n_sink, self.n_recent, self.qpos = n_sink, n_recent, qpos
        self.dist = {}   # layer -> (B, H, Q, T) float64
        self.mass = {}   # layer -> (B, H, Q) float64
        self.q, self.k = {}, {}
        self.dmask = None

    def attend(self, call: AttnCall, state=None):
        with torch.no_grad():
            T_ = call.q0.shape[2]
            q = call.rope.apply(call.q0[:, :, self.qpos].double(), self.qpos)
            k = call.rope.apply(call.k0.double(), torch.arange(T_))
            s = self.logits(q, k, call.scale)
            causal = torch.arange(T_)[None, :] <= self.qpos[:, None]
            self.dmask = distant_mask(self.qpos, torch.arange(T_), self.n_sink, self.n_recent)
            full = torch.softmax(s.masked_fill(~causal, float("-inf")), -1)
            self.mass[call.layer] = (full * self.dmask).sum(-1)
            self.dist[call.layer] = self.distant(s)
            self.q[call.layer], self.k[call.layer], self.scale = q, k, call.scale
        return super().attend(call, state)

    @staticmethod
    def logits(q, k, scale):
        """scale · q kᵀ, query head h against KV head h // (H / H_kv)."""
        return torch.matmul(q, k.repeat_interleave(q.shape[1] // k.shape[1], dim=1).transpose(-1, -2)) * scale

    def distant(self, s):
        """softmax of the logits s (B, H, Q, T) over each query's distant tokens only."""
        return torch.softmax(s.masked_fill(~self.dmask, float("-inf")), -1)


def similarity_of_window(model, tokens: torch.Tensor, rec: DistantRecorder):
    """For one window: the (L, L) similarity matrices summed over heads and queries — `scores` (symmetric):
    sim(π_i, π_j) of the layers' own distant distributions; `keys` (row = anchor a, column = layer l >= a): sim of
    layer l's own distribution and the one its query gives with layer a's keys — the number of (head, query) pairs,
    and the per-layer distant attention share summed the same way."""
    with torch.no_grad():
        model(tokens, policy=rec)
    L = model.cfg.n_layers
    S, K = np.zeros((L, L)), np.zeros((L, L))
    n = rec.dist[0][..., 0].numel()
    for i in range(L):
        for j in range(i, L):
            if i == j:
                S[i, j] = K[i, j] = n
                continue
            S[i, j] = S[j, i] = float(js_similarity(rec.dist[i], rec.dist[j]).sum())
            K[i, j] = float(js_similarity(rec.distant(rec.logits(rec.q[j], rec.k[i], rec.scale)), rec.dist[j]).sum())
    mass = np.array([float(rec.mass[l].sum()) for l in range(L)])
    return S, K, n, mass


# ----------------------------------------------------------------------------------------------------------
# Text
# ----------------------------------------------------------------------------------------------------------

def load_texts(corpus: str):
    """(texts, source description): held-out documents of a corpus directory, or one text file."""
    if os.path.isdir(corpus):
        path = os.path.join(corpus, "heldout.jsonl")
        if not os.path.exists(path):
            die(f"{path} not found (build the corpus with models/corpus/build.py, or pass --corpus FILE.txt)")
        with open(path, encoding="utf-8") as f:
            return [json.loads(line)["text"] for line in f if line.strip()], path
    if os.path.isfile(corpus):
        with open(corpus, encoding="utf-8") as f:
            return [f.read()], corpus
    die(f"--corpus {corpus}: no such file or directory")


def windows_of(sp, texts, seq_len: int, seed: int):
    """Non-overlapping windows of seq_len tokens from the documents (each BOS + text, shuffled with seed, concatenated
    in that order). Returns a list of int64 tensors."""
    texts = list(texts)
    random.Random(seed).shuffle(texts)
    stream = []
    for t in texts:
        stream.extend([sp.bos_id()] + sp.encode(t))
    return [torch.tensor(stream[i:i + seq_len], dtype=torch.long) for i in range(0, len(stream) - seq_len + 1, seq_len)]


# ----------------------------------------------------------------------------------------------------------
# Measurements per δ
# ----------------------------------------------------------------------------------------------------------

def measured_kv(model, tokens, pol, chunk=64):
    """KV bytes held by the reference caches after `tokens` (incremental, chunks of `chunk`): (pod, full)."""
    out = []
    with torch.no_grad():
        for p in (pol, FullPolicy()):
            st = model.new_state(p, 1)
            for s in range(0, tokens.shape[0], chunk):
                model(tokens[None, s:s + chunk], state=st)
            out.append(sum(x.nbytes() for x in st.layers))
    return out[0], out[1]


def perplexity(model, wins, policy, first_distant: int, batch=4):
    """Over the windows (batched path): (perplexity of every predicted token, perplexity of the tokens predicted by
    queries at positions >= first_distant — those that have distant tokens —, mean KL(full || policy) of the
    next-token distributions at those positions, in nats; 0 for policy None = full)."""
    tot, n, tot_d, n_d, kl = 0.0, 0, 0.0, 0, 0.0
    with torch.no_grad():
        for i in range(0, len(wins), batch):
            x = torch.stack(wins[i:i + batch])
            lg = model(x[:, :-1], policy=policy).double()
            nll = F.cross_entropy(lg.reshape(-1, lg.shape[-1]), x[:, 1:].reshape(-1), reduction="none")
            nll = nll.view(x.shape[0], -1)
            tot, n = tot + float(nll.sum()), n + nll.numel()
            tot_d, n_d = tot_d + float(nll[:, first_distant:].sum()), n_d + nll[:, first_distant:].numel()
            if policy is not None:
                lp = torch.log_softmax(lg[:, first_distant:], -1)
                lf = torch.log_softmax(model(x[:, :-1]).double()[:, first_distant:], -1)
                kl += float((lf.exp() * (lf - lp)).sum())
    return math.exp(tot / n), math.exp(tot_d / max(1, n_d)), kl / max(1, n_d)


class ProximalOnly(FullPolicy):
    """Control, not a policy of the engine: attention over the proximal tokens only (distant ones dropped, no position
    re-indexing) — what is lost when distant tokens are simply forgotten. Batched path only."""
    name = "proximal-only"

    def __init__(self, n_sink: int, n_recent: int):
        self.n_sink, self.n_recent = n_sink, n_recent

    def attend(self, call: AttnCall, state=None):
        if state is not None:
            raise ValueError("proximal-only: batched path only")
        pos = call.pos
        q, k = call.rope.apply(call.q0, pos), call.rope.apply(call.k0, pos)
        cdt = torch.float64 if q.dtype == torch.float64 else torch.float32
        s = DistantRecorder.logits(q.to(cdt), k.to(cdt), call.scale)
        s = s.masked_fill(~proximal_mask(pos, pos, self.n_sink, self.n_recent).to(s.device), float("-inf"))
        return softmax_values(s, call.v, q.dtype)


def passkey_rows(sp, n_rows: int, length: int, n_recent: int, seed: int):
    """Passkey rows (models/train_adapter.py's standard task) of about `length` tokens with the key line at depths
    evenly spaced over [0, 1]; each row notes whether the whole key line is distant when the answer is predicted."""
    from train_adapter import Passkey
    pk, rng = Passkey(sp), random.Random(seed)
    rows = []
    for i in range(n_rows):
        ids, ans, (ks, ke), depth = pk.row(rng, length, i / max(1, n_rows - 1))
        rows.append({"ids": ids, "ans": ans, "depth": depth, "distant": ke - 1 <= len(ids) - 1 - n_recent})
    return rows


def passkey_accuracy(model, rows, policy):
    """Teacher-forced, one row at a time: a hit = every answer token is the argmax (greedy decoding would write the
    key). Returns (accuracy over all rows, accuracy over the rows whose key is distant)."""
    hits = []
    with torch.no_grad():
        for r in rows:
            x = torch.tensor([r["ids"] + r["ans"][:-1]])
            lg = model(x, policy=policy)[0, len(r["ids"]) - 1:]
            hits.append(bool((lg.argmax(-1) == torch.tensor(r["ans"])).all()))
    dist = [h for h, r in zip(hits, rows) if r["distant"]]
    return float(np.mean(hits)), (float(np.mean(dist)) if dist else None)


def heat_map(S, blocks, title, path, mass=None):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.patches as patches
    import matplotlib.pyplot as plt
    L = S.shape[0]
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 + 0.8 * L), max(5.0, 1.4 + 0.7 * L)))
    im = ax.imshow(S, vmin=max(0.0, float(S.min()) - 0.02), vmax=1.0, cmap="viridis")
    for i in range(L):
        for j in range(L):
            ax.text(j, i, f"{S[i, j]:.3f}", ha="center", va="center", fontsize=8,
                    color="white" if S[i, j] < (S.min() + 1) / 2 else "black")
    for b in blocks:
        ax.add_patch(patches.Rectangle((b[0] - 0.5, b[0] - 0.5), len(b), len(b), fill=False, edgecolor="red", lw=2))
    labels = [f"{l}" if mass is None else f"{l}\n({100 * mass[l]:.0f}%)" for l in range(L)]
    ax.set_xticks(range(L))
    ax.set_xticklabels(labels, fontsize=8)
    ax.set_yticks(range(L))
    ax.set_xlabel("layer (share of attention on distant tokens)" if mass is not None else "layer")
    ax.set_ylabel("layer")
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="1 - JSD / ln 2")
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="llama GGUF (any type the reference reads)")
    ap.add_argument("--corpus", default=os.path.join(HERE, "work", "corpus"),
                    help="corpus dir (heldout.jsonl is used) or a text file")
    ap.add_argument("--delta", type=float, nargs="+", default=[0.9], help="similarity thresholds in (0, 1]")
    ap.add_argument("--n-sink", type=int, default=16)
    ap.add_argument("--n-recent", type=int, default=128)
    ap.add_argument("--share", choices=["scores", "keys"], default="scores", help="share mode written to the adapters")
    ap.add_argument("--criterion", choices=["scores", "keys"], default="scores",
                    help="similarity the blocks are grouped by: 'scores' = JS similarity of the layers' distant "
                         "attention (DESIGN.md §3.4); 'keys' = of a layer's attention with its own vs the anchor's keys")
    ap.add_argument("--seq-len", type=int, default=0, help="tokens per window (default: the model's context)")
    ap.add_argument("--windows", type=int, default=8, help="calibration windows")
    ap.add_argument("--queries", type=int, default=64, help="sampled query positions per window")
    ap.add_argument("--min-distant", type=int, default=32, help="distant tokens a sampled query has at least")
    ap.add_argument("--eval-windows", type=int, default=8, help="other windows for the perplexity check (0 = none)")
    ap.add_argument("--passkey-rows", type=int, default=0, help="passkey rows for an accuracy check (0 = none)")
    ap.add_argument("--passkey-len", type=int, default=0, help="passkey row length (default: seq_len - 16)")
    ap.add_argument("--out-dir", default=os.path.join("build", "pod"))
    ap.add_argument("--png", default=os.path.join("docs", "pod-similarity.png"), help="heat map ('' = none)")
    ap.add_argument("--show-delta", type=float, default=None, help="the δ whose blocks the heat map outlines "
                                                                      "(default: the first --delta)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    try:
        deltas = [check_delta(d) for d in args.delta]
    except ValueError as e:
        die(str(e))
    if args.n_sink < 0 or args.n_recent < 1:
        die("--n-sink must be >= 0 and --n-recent >= 1")
    torch.set_num_threads(max(1, args.threads))
    t0 = time.time()
    model, cfg, g = load_gguf(args.model, dtype=torch.float32)
    from edgeinf_ref.spm_proto import processor_from_gguf
    sp = processor_from_gguf(g)
    seq_len = args.seq_len or cfg.max_seq_len
    if seq_len > cfg.max_seq_len:
        die(f"--seq-len {seq_len} > the model's context {cfg.max_seq_len}")
    lo = args.n_sink + args.n_recent + args.min_distant - 1   # first query with >= min_distant distant tokens
    if lo >= seq_len:
        die(f"no query of a {seq_len}-token window has {args.min_distant} distant tokens "
            f"(n_sink {args.n_sink} + n_recent {args.n_recent}): raise --seq-len or lower them")
    texts, source = load_texts(args.corpus)
    wins = windows_of(sp, texts, seq_len, args.seed)
    if len(wins) < 1:
        die(f"{source}: not one window of {seq_len} tokens")
    n_cal = min(args.windows, len(wins) if not args.eval_windows else max(1, len(wins) // 2))
    cal, ev = wins[:n_cal], wins[n_cal:n_cal + args.eval_windows]
    log(f"model {args.model}: {cfg.n_layers} layers, {cfg.n_heads} heads ({cfg.n_kv_heads} KV), ctx {cfg.max_seq_len}; "
        f"{len(cal)} calibration + {len(ev)} evaluation windows of {seq_len} tokens from {source}")

    rng = torch.Generator().manual_seed(args.seed)
    L = cfg.n_layers
    S_sum, K_sum, n_sum, mass_sum = np.zeros((L, L)), np.zeros((L, L)), 0, np.zeros(L)
    per_window = []
    for w in cal:
        n_q = min(args.queries, seq_len - lo)
        qpos = torch.sort(lo + torch.randperm(seq_len - lo, generator=rng)[:n_q]).values
        rec = DistantRecorder(args.n_sink, args.n_recent, qpos)
        S, K, n, mass = similarity_of_window(model, w[None], rec)
        S_sum += S
        K_sum += K
        n_sum += n
        mass_sum += mass
        per_window.append((S / n).round(5).tolist())   # scores criterion
    S_scores, S_keys = S_sum / n_sum, K_sum / n_sum
    S = S_scores if args.criterion == "scores" else S_keys
    mass = mass_sum / n_sum
    spread = np.std(np.array(per_window), axis=0) if len(per_window) > 1 else np.zeros((L, L))
    log("similarity of the layers' distant attention (1 - JSD/ln2, mean over heads and queries):")
    for i in range(L):
        log("  " + " ".join(f"{S_scores[i, j]:.4f}" for j in range(L)))
    log("share=keys criterion (row: anchor whose keys layer `column` uses; upper triangle):")
    for i in range(L):
        log("  " + " ".join(f"{S_keys[i, j]:.4f}" if j >= i else "   -  " for j in range(L)))
    log("distant-token share of attention per layer: " + " ".join(f"{100 * m:.1f}%" for m in mass))

    os.makedirs(args.out_dir, exist_ok=True)
    kv_dim = cfg.n_kv_heads * cfg.head_dim
    result = {
        "model": os.path.basename(args.model), "source": os.path.relpath(source) if os.path.exists(source) else source,
        "config": {"n_layers": L, "n_heads": cfg.n_heads, "n_kv_heads": cfg.n_kv_heads, "head_dim": cfg.head_dim,
                   "dim": cfg.dim, "ctx": cfg.max_seq_len},
        "n_sink": args.n_sink, "n_recent": args.n_recent, "seq_len": seq_len, "calibration_windows": len(cal),
        "queries_per_window": min(args.queries, seq_len - lo), "min_distant": args.min_distant, "seed": args.seed,
        "criterion": args.criterion,
        "similarity": S_scores.round(6).tolist(), "similarity_std_over_windows": spread.round(6).tolist(),
        "similarity_keys": S_keys.round(6).tolist(),
        "distant_attention_share": mass.round(6).tolist(), "per_delta": [],
    }
    ppl_cache = {}
    if ev:
        first_distant = args.n_sink + args.n_recent
        full_ppl, full_ppl_d, _ = perplexity(model, ev, None, first_distant)
        result["eval"] = {"windows": len(ev), "tokens": len(ev) * (seq_len - 1), "full_ppl": round(full_ppl, 4),
                          "tokens_with_distant": len(ev) * max(0, seq_len - 1 - first_distant),
                          "full_ppl_with_distant": round(full_ppl_d, 4)}
        log(f"full attention: perplexity {full_ppl:.4f} on {len(ev)} evaluation windows ({full_ppl_d:.4f} on the "
            f"tokens predicted at positions >= {first_distant}, which have distant tokens)")
        ctl_ppl, ctl_ppl_d, ctl_kl = perplexity(model, ev, ProximalOnly(args.n_sink, args.n_recent), first_distant)
        result["eval"]["proximal_only_ppl"] = round(ctl_ppl, 4)
        result["eval"]["proximal_only_ppl_with_distant"] = round(ctl_ppl_d, 4)
        result["eval"]["proximal_only_kl"] = round(ctl_kl, 6)
        log(f"control, distant tokens dropped: perplexity {ctl_ppl:.4f} ({100 * (ctl_ppl / full_ppl - 1):+.2f}%; "
            f"{100 * (ctl_ppl_d / full_ppl_d - 1):+.2f}% with distant), KL(full || it) {ctl_kl:.5f} nats")
    pk_rows = []
    if args.passkey_rows:
        pk_len = args.passkey_len or seq_len - 16
        pk_rows = passkey_rows(sp, args.passkey_rows, pk_len, args.n_recent, args.seed)
        n_dist = sum(r["distant"] for r in pk_rows)
        result["passkey"] = {"rows": len(pk_rows), "length": pk_len, "rows_key_distant": n_dist,
                             "full": passkey_accuracy(model, pk_rows, None),
                             "proximal_only": passkey_accuracy(model, pk_rows, ProximalOnly(args.n_sink,
                                                                                           args.n_recent))}
        log(f"passkey ({len(pk_rows)} rows of ~{pk_len} tokens, {n_dist} with the key distant; accuracy all / key "
            f"distant): full {result['passkey']['full']}, distant dropped {result['passkey']['proximal_only']}")
    for d in deltas:
        blocks = greedy_blocks(S, d)
        starts = starts_from_blocks(blocks, L)
        pod_b, full_b = measured_kv(model, cal[0], PodPolicy(blocks, args.n_sink, args.n_recent, args.share))
        expect = kv_bytes_held(seq_len, L, len(blocks), kv_dim, args.n_sink, args.n_recent)
        if pod_b != expect:
            raise AssertionError(f"measured KV bytes {pod_b} != the contract's formula {expect}")
        entry = {"delta": d, "blocks": blocks, "block_starts": starts, "n_blocks": len(blocks),
                 "kv_bytes_full": full_b, "kv_bytes_pod": pod_b, "kv_saved": round(1 - pod_b / full_b, 4),
                 "kv_saved_asymptotic": round((L - len(blocks)) / (2 * L), 4),
                 "kv_saved_at": {str(n): round(kv_saving(n, L, len(blocks), args.n_sink, args.n_recent), 4)
                                 for n in (4096, 16384, 65536)}}
        if ev:
            key = tuple(starts)
            if key not in ppl_cache:
                ppl_cache[key] = {sh: perplexity(model, ev, PodPolicy(blocks, args.n_sink, args.n_recent, sh),
                                                 first_distant) for sh in ("scores", "keys")}
            entry["ppl"] = {sh: round(v[0], 4) for sh, v in ppl_cache[key].items()}
            entry["ppl_increase"] = {sh: round(v[0] / full_ppl - 1, 4) for sh, v in ppl_cache[key].items()}
            entry["ppl_with_distant"] = {sh: round(v[1], 4) for sh, v in ppl_cache[key].items()}
            entry["ppl_with_distant_increase"] = {sh: round(v[1] / full_ppl_d - 1, 4)
                                                  for sh, v in ppl_cache[key].items()}
            entry["kl_vs_full"] = {sh: round(v[2], 6) for sh, v in ppl_cache[key].items()}
        if pk_rows:
            entry["passkey"] = {sh: passkey_accuracy(model, pk_rows, PodPolicy(blocks, args.n_sink, args.n_recent, sh))
                                for sh in ("scores", "keys")}
        pc = PodConfig.for_model(cfg, starts, args.n_sink, args.n_recent, args.share, d, S.astype(np.float32))
        apath = os.path.join(args.out_dir, f"pod-delta{d:g}.gguf")
        pc.save_gguf(apath)
        entry["adapter"] = apath
        result["per_delta"].append(entry)
        msg = (f"delta {d:g}: blocks {blocks} -> KV saved {100 * entry['kv_saved']:.1f}% at {seq_len} tokens "
               f"({100 * entry['kv_saved_asymptotic']:.1f}% asymptotically)")
        if ev:
            msg += "; perplexity " + ", ".join(f"{sh} {v[0]:.4f} ({100 * (v[0] / full_ppl - 1):+.2f}%; "
                                               f"{100 * (v[1] / full_ppl_d - 1):+.2f}% with distant, KL {v[2]:.5f})"
                                               for sh, v in ppl_cache[tuple(starts)].items())
        if pk_rows:
            msg += f"; passkey scores {entry['passkey']['scores']}, keys {entry['passkey']['keys']}"
        log(msg)
    result["seconds"] = round(time.time() - t0, 1)
    jpath = os.path.join(args.out_dir, "pod-calib.json")
    with open(jpath, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)
        f.write("\n")
    if args.png:
        shown = [e for e in result["per_delta"] if args.show_delta is None or abs(e["delta"] - args.show_delta) < 1e-9]
        if not shown:
            die(f"--show-delta {args.show_delta} is not one of --delta")
        first = shown[0]
        heat_map(S_scores, first["blocks"],
                 f"{result['model']}: distant-token attention similarity\n(n_sink {args.n_sink}, n_recent "
                 f"{args.n_recent}, {len(cal)}x{seq_len} tokens; red: blocks at δ={first['delta']:g})",
                 args.png, mass)
        log(f"heat map: {args.png}")
    log(f"wrote {jpath} ({result['seconds']} s)")
    return result


if __name__ == "__main__":
    main()
