"""Attention for the edgeinf reference: RoPE, the KV cache, and one `attend` entry point per policy.

Every policy of DESIGN.md §3 (full, streaming, edgeinfinite, pod, edgeinfinite+pod) plugs in here as an
object with two methods:

    policy.new_layer_state(cfg, layer, batch, device, dtype) -> state   # per layer, for incremental inference
    policy.attend(call, state) -> out (B, n_heads, T, head_dim)

`call` (an AttnCall) hands the policy everything it may need: PRE-RoPE queries/keys (EdgeInfinite's memory is
position-free), values, absolute positions, the RoPE helper (so a policy can re-index positions like
StreamingLLM), and the normed layer input (EdgeInfinite's gate reads it). `state is None` means the whole
sequence is given at once with nothing cached (training / batched evaluation); otherwise the call is one
chunk (>= 1 token) of an incremental run and the state is the policy's cache, mirroring the C engine.

Implemented: `full`, `streaming`, `edgeinfinite` (docs/edgeinfinite.md is their exact contract); `pod` and
`edgeinfinite+pod` are pod.py's PodPolicy / EdgeInfinitePodPolicy (docs/pod.md). All of them go through one softmax function,
`attend_groups`, which normalises several score sets (e.g. sink keys and window keys, each seen by a differently
rotated query) together.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F

from .memory import compress, empty_memory, mem_dtype, no_autocast, retrieve

_HAS_SDPA = hasattr(F, "scaled_dot_product_attention")


# ----------------------------------------------------------------------------------------------------------
# RoPE (llama.cpp "normal" mode: ADJACENT pairs)
# ----------------------------------------------------------------------------------------------------------

class Rope:
    """Rotary embedding in llama.cpp's normal mode: pair (x[2i], x[2i+1]) rotated by pos * theta^(-2i/head_dim).

    Angles are computed in float64 so positions up to 1e6+ keep their precision (DESIGN.md §3.3); the rotation
    itself runs in float32 (float64 when the input is float64) and the result has the input's dtype."""

    def __init__(self, head_dim: int, theta: float):
        assert head_dim % 2 == 0, "RoPE needs an even head_dim"
        self.head_dim = head_dim
        self.theta = float(theta)
        i = torch.arange(0, head_dim // 2, dtype=torch.float64)
        self.inv_freq = self.theta ** (-2.0 * i / head_dim)  # (head_dim/2,) float64, on CPU
        self._cache = {}

    def cos_sin(self, pos: torch.Tensor, device, dtype):
        """cos/sin tables (T, head_dim/2) for absolute positions `pos` (T,), in `dtype` on `device`."""
        key = None
        if pos.dim() == 1 and pos.numel() > 0:
            # Training calls with pos = arange(T) over and over: cache those tables.
            p0 = int(pos[0])
            if p0 == 0 and int(pos[-1]) == pos.numel() - 1:
                key = (pos.numel(), str(device), dtype)
                hit = self._cache.get(key)
                if hit is not None:
                    return hit
        ang = pos.detach().to("cpu", torch.float64)[:, None] * self.inv_freq[None, :]
        out = (torch.cos(ang).to(device=device, dtype=dtype), torch.sin(ang).to(device=device, dtype=dtype))
        if key is not None:
            if len(self._cache) > 16:
                self._cache.clear()
            self._cache[key] = out
        return out

    def apply(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """Rotate x (..., T, head_dim) at positions pos (T,). Returns a new tensor of x's dtype."""
        cdt = torch.float64 if x.dtype == torch.float64 else torch.float32
        cos, sin = self.cos_sin(pos, x.device, cdt)
        xs = x.to(cdt).reshape(*x.shape[:-1], self.head_dim // 2, 2)
        x0, x1 = xs[..., 0], xs[..., 1]
        o0 = x0 * cos - x1 * sin
        o1 = x0 * sin + x1 * cos
        return torch.stack((o0, o1), dim=-1).reshape(x.shape).to(x.dtype)


# ----------------------------------------------------------------------------------------------------------
# The call handed to every policy
# ----------------------------------------------------------------------------------------------------------

@dataclass
class AttnCall:
    layer: int
    q0: torch.Tensor      # (B, n_heads, T, head_dim)    queries BEFORE RoPE
    k0: torch.Tensor      # (B, n_kv_heads, T, head_dim) keys BEFORE RoPE
    v: torch.Tensor       # (B, n_kv_heads, T, head_dim)
    pos: torch.Tensor     # (T,) int64 absolute positions of these tokens, on the CPU (no device syncs)
    rope: Rope
    x_norm: torch.Tensor  # (B, T, dim) RMSNorm'd layer input (for EdgeInfinite's gate)

    @property
    def scale(self) -> float:
        return 1.0 / math.sqrt(self.q0.shape[-1])


# ----------------------------------------------------------------------------------------------------------
# Shared math
# ----------------------------------------------------------------------------------------------------------

def expand_kv(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    """(B, n_kv, S, D) -> (B, n_heads, S, D): query head h reads kv head h // (n_heads / n_kv)."""
    n_kv = x.shape[1]
    if n_kv == n_heads:
        return x
    assert n_heads % n_kv == 0
    return x.repeat_interleave(n_heads // n_kv, dim=1)


def attend_groups(groups, scale):
    """One softmax over several score sets: groups = [(q, k, v, allowed)], q (B, H, ..., T, D) queries (each group
    may rotate its queries differently), k, v (B, Hkv, ..., S_i, D), allowed a bool mask broadcastable to
    (..., T, S_i) or None (all allowed). Computes softmax(concat_i(q_i k_i^T) * scale) and sums each group's part of
    the probabilities times its values. Float32 (float64 if q is); returns the first q's dtype. A query that sees
    no key at all gets zeros."""
    q_first = groups[0][0]
    H = q_first.shape[1]
    cdt = torch.float64 if q_first.dtype == torch.float64 else torch.float32
    scores, sizes = [], []
    for q, k, _, allowed in groups:
        s = torch.matmul(q.to(cdt), expand_kv(k, H).to(cdt).transpose(-1, -2)) * scale   # (B,H,...,T,S_i)
        if allowed is not None:
            s = s.masked_fill(~allowed, float("-inf"))
        scores.append(s)
        sizes.append(s.shape[-1])
    s = scores[0] if len(scores) == 1 else torch.cat(scores, dim=-1)
    p = torch.softmax(s, dim=-1)
    p = torch.nan_to_num(p, nan=0.0)
    if len(groups) == 1:
        return torch.matmul(p, expand_kv(groups[0][2], H).to(cdt)).to(q_first.dtype)
    out, off = None, 0
    for (_, _, v, _), n in zip(groups, sizes):
        o = torch.matmul(p[..., off:off + n], expand_kv(v, H).to(cdt))
        out = o if out is None else out + o
        off += n
    return out.to(q_first.dtype)


def _softmax_attend(q, k, v, allowed, scale):
    """softmax(q k^T * scale, masked by allowed (T,S) bool) v, in float32 (float64 if q is); returns q's dtype."""
    return attend_groups([(q, k, v, allowed)], scale)


def masked_attention(q, k, v, q_pos, k_pos, scale):
    """Softmax attention of q (B,H,T,D) over k,v (B,Hkv,S,D); query i sees key j iff k_pos[j] <= q_pos[i].

    Scores and softmax run in float32 (float64 if q is float64), like the C engine; returns q's dtype.
    A query that sees no key gets zeros (cannot happen for causal full attention)."""
    allowed = (k_pos[None, :].cpu() <= q_pos[:, None].cpu()).to(q.device)  # (T,S)
    return _softmax_attend(q, k, v, allowed, scale)


def causal_attention(q, k, v, scale):
    """Batched causal attention over one contiguous sequence (training path). Uses SDPA when torch has it."""
    H = q.shape[1]
    if _HAS_SDPA and q.dtype != torch.float64:
        kk, vv = expand_kv(k, H), expand_kv(v, H)
        # SDPA's default scale is 1/sqrt(D), which is ours.
        return F.scaled_dot_product_attention(q, kk, vv, is_causal=True)
    T = q.shape[2]
    allowed = torch.ones(T, T, dtype=torch.bool, device=q.device).tril()
    return _softmax_attend(q, k, v, allowed, scale)


# ----------------------------------------------------------------------------------------------------------
# KV cache (mirrors the C engine: keys are stored AFTER RoPE at their absolute position)
# ----------------------------------------------------------------------------------------------------------

class KVCache:
    """Append-only per-layer cache: k, v (B, n_kv, S, D) and their absolute positions (S,) kept on the CPU."""

    def __init__(self, batch: int, n_kv: int, head_dim: int, device, dtype):
        self.k = torch.zeros(batch, n_kv, 0, head_dim, device=device, dtype=dtype)
        self.v = torch.zeros(batch, n_kv, 0, head_dim, device=device, dtype=dtype)
        self.pos = torch.zeros(0, dtype=torch.long)

    def append(self, k, v, pos):
        self.k = torch.cat([self.k, k.to(self.k.dtype)], dim=2)
        self.v = torch.cat([self.v, v.to(self.v.dtype)], dim=2)
        self.pos = torch.cat([self.pos, pos.cpu()])

    def drop_front(self, n: int):
        """Forget the n oldest entries (an evicted segment)."""
        self.k, self.v, self.pos = self.k[:, :, n:], self.v[:, :, n:], self.pos[n:]

    def __len__(self):
        return self.k.shape[2]

    def nbytes(self) -> int:
        return self.k.numel() * self.k.element_size() + self.v.numel() * self.v.element_size()


# ----------------------------------------------------------------------------------------------------------
# Policies
# ----------------------------------------------------------------------------------------------------------

class FullPolicy:
    """DESIGN.md §3.1: causal attention over every previous token."""
    name = "full"

    def new_layer_state(self, cfg, layer: int, batch: int, device, dtype):
        return KVCache(batch, cfg.n_kv_heads, cfg.head_dim, device, dtype)

    def attend(self, call: AttnCall, state: Optional[KVCache]) -> torch.Tensor:
        q = call.rope.apply(call.q0, call.pos)
        k = call.rope.apply(call.k0, call.pos)
        if state is None:
            # Batched: pos must be 0..T-1 (one contiguous sequence); the causal mask is positional.
            return causal_attention(q, k, call.v, call.scale)
        state.append(k, call.v, call.pos)
        return masked_attention(q, state.k, state.v, call.pos, state.pos, call.scale)


# ----------------------------------------------------------------------------------------------------------
# Streaming and EdgeInfinite (docs/edgeinfinite.md is the contract; section names below refer to it)
# ----------------------------------------------------------------------------------------------------------

class SegmentLayout:
    """"Cache layout and segments" for (n_sink, window, seg): sinks are positions < n_sink, the other tokens form
    segments of `seg`; a query in segment j sees the sinks, segments j-W..j-1 (W = window / seg) and its own
    segment causally; segment j-W-1 is evicted when segment j starts."""

    def __init__(self, n_sink: int, window: int, seg: int):
        if seg <= 0 or n_sink < 0 or window < 0 or window % seg:
            raise ValueError(f"bad layout n_sink={n_sink} window={window} seg={seg}: need seg > 0, n_sink >= 0, "
                             f"window >= 0 and window % seg == 0")
        self.n_sink, self.window, self.seg = int(n_sink), int(window), int(seg)
        self.W = self.window // self.seg

    @property
    def budget(self) -> int:
        """Most tokens the cache ever holds; below this many tokens nothing is evicted."""
        return self.n_sink + self.window + self.seg

    def segment(self, p: int) -> int:
        return (p - self.n_sink) // self.seg

    def slot_positions(self, pos: torch.Tensor) -> torch.Tensor:
        """"Positions": the cache slot c = n_sink + (p - p_fw) at which a query at absolute position p is rotated
        against the sink keys (p itself for sinks and before any eviction). pos (T,) int64 on the CPU."""
        j = torch.div(pos - self.n_sink, self.seg, rounding_mode="floor")
        shift = torch.clamp(j - self.W, min=0) * self.seg   # p_fw - n_sink
        return torch.where(pos < self.n_sink, pos, pos - shift)

    def pieces(self, p0: int, n: int):
        """Split the chunk of positions p0..p0+n-1 into [a, b) index ranges that never straddle the sink/segment
        boundary or a segment boundary (so every piece sees one cache state)."""
        out, a = [], 0
        while a < n:
            p = p0 + a
            end = self.n_sink if p < self.n_sink else self.n_sink + (self.segment(p) + 1) * self.seg
            b = min(n, a + end - p)
            out.append((a, b))
            a = b
        return out


class SegmentState:
    """Per-layer incremental state of streaming / edgeinfinite: the sink KV, the non-sink cache (keys rotated at
    their absolute positions, values) and, with memory, each cached token's memory key/value (pre-RoPE, adapter
    applied; what compression reads when its segment is evicted), the memory M (B, n_kv, hd, hd), z (B, n_kv, hd),
    and counters. Memory is float32 (float64 when the model runs in float64)."""

    def __init__(self, batch: int, n_kv: int, head_dim: int, device, dtype, with_memory: bool):
        self.sink = KVCache(batch, n_kv, head_dim, device, dtype)
        self.win = KVCache(batch, n_kv, head_dim, device, dtype)
        self.with_memory = with_memory
        mdt = torch.float64 if dtype == torch.float64 else torch.float32
        if with_memory:
            self.km = torch.zeros(batch, n_kv, 0, head_dim, device=device, dtype=mdt)
            self.vm = torch.zeros(batch, n_kv, 0, head_dim, device=device, dtype=mdt)
            self.M, self.z = empty_memory(batch, n_kv, head_dim, device, mdt)
        self.compressions = 0   # segments folded into memory
        self.evictions = 0      # segments that left the cache (dropped or compressed)
        self.next_pos = 0

    def __len__(self):
        return len(self.sink) + len(self.win)

    def nbytes(self) -> int:
        """KV cache bytes currently held."""
        return self.sink.nbytes() + self.win.nbytes()

    def memory_nbytes(self) -> int:
        if not self.with_memory:
            return 0
        return self.M.numel() * self.M.element_size() + self.z.numel() * self.z.element_size()


class StreamingPolicy:
    """StreamingLLM-style sink + window with segment-wise eviction (evicted segments are dropped), positions
    re-indexed as in "Positions". Incremental (state given) and batched (whole sequence from position 0) paths
    compute the same thing."""
    name = "streaming"
    memory = False

    def __init__(self, n_sink: int, window: int, seg: int):
        self.layout = SegmentLayout(n_sink, window, seg)

    def new_layer_state(self, cfg, layer: int, batch: int, device, dtype):
        return SegmentState(batch, cfg.n_kv_heads, cfg.head_dim, device, dtype, self.memory)

    def attend(self, call: AttnCall, state: Optional[SegmentState]) -> torch.Tensor:
        if state is None:
            local = self._local_batched(call)
            return self._mix_batched(call, local) if self.memory else local
        pos = call.pos.tolist()
        if pos[0] != state.next_pos or pos[-1] - pos[0] != len(pos) - 1:
            raise ValueError(f"{self.name}: positions {pos[0]}..{pos[-1]} do not continue the cache "
                             f"(next position {state.next_pos})")
        outs = [self._piece(call, state, a, b) for a, b in self.layout.pieces(pos[0], len(pos))]
        state.next_pos = pos[-1] + 1
        return outs[0] if len(outs) == 1 else torch.cat(outs, dim=2)

    # -- incremental --
    def _piece(self, call: AttnCall, st: SegmentState, a: int, b: int) -> torch.Tensor:
        """Attention output (B, H, b-a, D) of tokens a..b-1 of the call, which lie in one sink run or segment."""
        lay = self.layout
        pos = call.pos[a:b]
        p0 = int(pos[0])
        q0, k0, v = call.q0[:, :, a:b], call.k0[:, :, a:b], call.v[:, :, a:b]
        q, k = call.rope.apply(q0, pos), call.rope.apply(k0, pos)
        dev = q.device
        if p0 < lay.n_sink:
            st.sink.append(k, v, pos)
            allowed = (st.sink.pos[None, :] <= pos[:, None]).to(dev)
            local = attend_groups([(q, st.sink.k, st.sink.v, allowed)], call.scale)
        else:
            j = lay.segment(p0)
            if (p0 - lay.n_sink) % lay.seg == 0 and j - lay.W - 1 >= 0:
                self._evict(call.layer, st, j - lay.W - 1)
            st.win.append(k, v, pos)
            if self.memory:
                self._remember(call, st, a, b)
            groups = []
            if len(st.sink):
                groups.append((call.rope.apply(q0, lay.slot_positions(pos)), st.sink.k, st.sink.v, None))
            groups.append((q, st.win.k, st.win.v, (st.win.pos[None, :] <= pos[:, None]).to(dev)))
            local = attend_groups(groups, call.scale)
        return self._mix_piece(call, st, a, b, local) if self.memory else local

    def _evict(self, layer: int, st: SegmentState, e: int):
        """Segment e leaves the cache (it is the oldest non-sink segment there)."""
        lay = self.layout
        first = lay.n_sink + e * lay.seg
        if len(st.win) < lay.seg or int(st.win.pos[0]) != first or int(st.win.pos[lay.seg - 1]) != first + lay.seg - 1:
            raise AssertionError(f"evicting segment {e}: cache does not start with it")
        if self.memory:
            self._compress(st, lay.seg)
        st.win.drop_front(lay.seg)
        st.evictions += 1

    def _remember(self, call, st, a, b):
        raise NotImplementedError

    def _compress(self, st, n):
        raise NotImplementedError

    def _mix_piece(self, call, st, a, b, local):
        raise NotImplementedError

    # -- batched --
    def _local_batched(self, call: AttnCall) -> torch.Tensor:
        """Local attention of a whole sequence at positions 0..T-1, segment by segment (cost linear in T): every
        segment's queries against the sinks (slot-rotated queries) and a sliding block of W+1 segments."""
        lay = self.layout
        T = call.q0.shape[2]
        if T and (int(call.pos[0]) != 0 or int(call.pos[-1]) != T - 1):
            raise ValueError(f"{self.name}: the batched path needs positions 0..T-1")
        q, k, v = call.rope.apply(call.q0, call.pos), call.rope.apply(call.k0, call.pos), call.v
        dev = q.device
        ns = min(lay.n_sink, T)
        L = T - ns
        parts = []
        if ns:
            causal = torch.ones(ns, ns, dtype=torch.bool, device=dev).tril()
            parts.append(attend_groups([(q[:, :, :ns], k[:, :, :ns], v[:, :, :ns], causal)], call.scale))
        if L:
            S, W = lay.seg, lay.W
            nseg = -(-L // S)
            pad = nseg * S - L
            B, H, _, D = q.shape

            def segs(x):      # (B, h, T, D) -> the non-sink tokens as (B, h, nseg, S, D), zero-padded at the end
                return F.pad(x[:, :, ns:], (0, 0, 0, pad)).reshape(x.shape[0], x.shape[1], nseg, S, D)

            def windows(x):   # (B, h, T, D) -> for each segment j, the W+1 segments j-W..j: (B, h, nseg, (W+1)S, D)
                xp = F.pad(x[:, :, ns:], (0, 0, W * S, pad))
                return xp.unfold(2, (W + 1) * S, S).transpose(-1, -2)

            qi = torch.arange(nseg)[:, None, None] * S + torch.arange(S)[None, :, None]          # query index
            ki = (torch.arange(nseg)[:, None, None] - W) * S + torch.arange((W + 1) * S)[None, None, :]
            allowed = ((ki >= 0) & (ki <= qi)).to(dev)                                           # (nseg, S, (W+1)S)
            groups = []
            if ns:
                slots = lay.slot_positions(torch.arange(ns, ns + nseg * S))
                qc = call.rope.apply(F.pad(call.q0[:, :, ns:], (0, 0, 0, pad)), slots).reshape(B, H, nseg, S, D)
                groups.append((qc, k[:, :, :ns].unsqueeze(2), v[:, :, :ns].unsqueeze(2), None))
            groups.append((segs(q), windows(k), windows(v), allowed))
            parts.append(attend_groups(groups, call.scale).reshape(B, H, nseg * S, D)[:, :, :L])
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=2)

    def _mix_batched(self, call, local):
        raise NotImplementedError


class EdgeInfinitePolicy(StreamingPolicy):
    """Streaming plus compressed memory and the memory-gating module ("Memory"): evicted segments are folded into
    per-(layer, KV head) memory; every query head's output is g·A_mem + (1-g)·A_local with the adapter's gate.
    routing=True ("auto"): the exact streaming (= full) output while memory is empty. routing=False (not in the
    contract, for experiments): the gate applies to every token, A_mem = 0 while memory is empty.
    The batched path is differentiable w.r.t. the adapter; memory stays float32 under autocast."""
    name = "edgeinfinite"
    memory = True

    def __init__(self, n_sink: int, window: int, seg: int, adapter, eps: Optional[float] = None,
                 routing: bool = True):
        super().__init__(n_sink, window, seg)
        if adapter is None:
            raise ValueError("edgeinfinite needs an adapter (gate weights)")
        self.adapter = adapter
        self.eps = float(adapter.eps if eps is None else eps)
        self.routing = routing
        # Training hook (models/train_adapter.py's distillation): when set, the batched path calls
        # probe(call, ns, a_mem, gate, use) with the memory read a_mem (B, H, L, D) and gate (B, H, L, 1) of the
        # non-sink positions and use (1, 1, L, 1) marking the positions that read memory. Never set for inference.
        self.probe = None
        # Training hook (train_adapter.py --dilute): None, or a (B, n) tensor of per-segment weights for the batched
        # path's compressions (memory.compress). Never set for inference.
        self.seg_weight = None

    # -- incremental --
    def _remember(self, call, st, a, b):
        with no_autocast(st.M.device):
            xn = call.x_norm[:, a:b].to(st.M.dtype)
            st.km = torch.cat([st.km, self.adapter.mem_k(call.layer, xn, call.k0[:, :, a:b]).to(st.M.dtype)], 2)
            st.vm = torch.cat([st.vm, self.adapter.mem_v(call.layer, xn, call.v[:, :, a:b]).to(st.M.dtype)], 2)

    def _compress(self, st, n):
        with no_autocast(st.M.device):
            st.M, st.z = compress(st.M, st.z, st.km[:, :, :n], st.vm[:, :, :n], self.eps)
        st.km, st.vm = st.km[:, :, n:], st.vm[:, :, n:]
        st.compressions += 1

    def _mix_piece(self, call, st, a, b, local):
        return mix_memory(self.adapter, self.eps, self.routing, call, st, a, b, local)

    # -- batched --
    def _mix_batched(self, call, local):
        lay = self.layout
        S, W = lay.seg, lay.W
        B, H, T, D = call.q0.shape
        n_kv = call.k0.shape[1]
        ns = min(lay.n_sink, T)
        L = T - ns
        nseg = -(-L // S)
        n_comp = max(0, nseg - W - 1)   # the last segment j = nseg-1 reads segments 0..nseg-W-2 from memory
        if self.routing and n_comp == 0:
            return local
        dev = local.device
        mdt = mem_dtype(call.q0)
        ad, eps = self.adapter, self.eps
        with no_autocast(dev):
            xn = call.x_norm.to(mdt)
            M, z = empty_memory(B, n_kv, D, dev, mdt)
            Ms, zs = [M], [z]
            if n_comp:
                km = ad.mem_k(call.layer, xn, call.k0)
                vm = ad.mem_v(call.layer, xn, call.v)
                sw = self.seg_weight
                for e in range(n_comp):
                    s0 = ns + e * S
                    M, z = compress(M, z, km[:, :, s0:s0 + S], vm[:, :, s0:s0 + S], eps,
                                    None if sw is None else sw[:, e].to(dev))
                    Ms.append(M)
                    zs.append(z)
            qm = ad.mem_q(call.layer, xn, call.q0)                 # (B, H, T, D)
            g = ad.gate(call.layer, xn).unsqueeze(-1)              # (B, H, T, 1)
            loc = local.to(mdt)
            parts = []
            if ns:
                if self.routing:
                    parts.append(loc[:, :, :ns])
                else:
                    am = retrieve(qm[:, :, :ns], expand_kv(Ms[0], H), expand_kv(zs[0], H), eps)
                    parts.append(g[:, :, :ns] * am + (1.0 - g[:, :, :ns]) * loc[:, :, :ns])
            if L:
                pad = nseg * S - L
                idx = torch.tensor([max(0, j - W) for j in range(nseg)], device=dev)
                Mst = torch.stack(Ms, dim=2).index_select(2, idx)     # (B, n_kv, nseg, D, D): memory seen by segment j
                zst = torch.stack(zs, dim=2).index_select(2, idx)     # (B, n_kv, nseg, D)
                qmn = F.pad(qm[:, :, ns:], (0, 0, 0, pad)).reshape(B, H, nseg, S, D)
                am = retrieve(qmn, expand_kv(Mst, H), expand_kv(zst, H), eps).reshape(B, H, nseg * S, D)[:, :, :L]
                gn, ln = g[:, :, ns:], loc[:, :, ns:]
                mix = gn * am + (1.0 - gn) * ln
                use = (torch.arange(L) // S >= W + 1).to(dev).view(1, 1, L, 1)
                if self.routing:
                    mix = torch.where(use, mix, ln)
                if self.probe is not None:
                    self.probe(call, ns, am, gn, use)
                parts.append(mix)
            out = parts[0] if len(parts) == 1 else torch.cat(parts, dim=2)
        return out.to(local.dtype)


def mix_memory(adapter, eps: float, routing: bool, call: AttnCall, st, a: int, b: int, local: torch.Tensor):
    """docs/edgeinfinite.md "Gate" and "Routing" for tokens a..b-1 of an incremental call: g·A_mem + (1-g)·A_local
    with st's memory (st.M, st.z, st.compressions), A_local alone while memory is empty (routing). Shared by
    EdgeInfinitePolicy and pod.EdgeInfinitePodPolicy."""
    if routing and st.compressions == 0:
        return local
    H = call.q0.shape[1]
    with no_autocast(st.M.device):
        xn = call.x_norm[:, a:b].to(st.M.dtype)
        qm = adapter.mem_q(call.layer, xn, call.q0[:, :, a:b])
        amem = retrieve(qm, expand_kv(st.M, H), expand_kv(st.z, H), eps)
        g = adapter.gate(call.layer, xn).unsqueeze(-1)
        out = g * amem + (1.0 - g) * local.to(st.M.dtype)
    return out.to(local.dtype)


def get_policy(policy):
    """None or "full" -> FullPolicy(); a policy object is returned as is (StreamingPolicy / EdgeInfinitePolicy,
    and pod.PodPolicy / pod.EdgeInfinitePodPolicy, take parameters, so they are passed as objects)."""
    if policy is None or policy == "full":
        return FullPolicy()
    if isinstance(policy, str):
        raise ValueError(f"unknown attention policy {policy!r} (by name: full; construct StreamingPolicy / "
                         f"EdgeInfinitePolicy / pod.PodPolicy / pod.EdgeInfinitePodPolicy objects for the others)")
    return policy


def attend(call: AttnCall, policy=None, layer_state=None) -> torch.Tensor:
    """The one attention entry point: dispatch `call` to `policy` (None = full causal) with its layer state."""
    return get_policy(policy).attend(call, layer_state)
