"""PoD (Proximal tokens over Distant tokens) for the edgeinf reference; docs/pod.md is the exact contract.

Layers are grouped into blocks of consecutive layers. For a query at position p the *proximal* tokens are the first
n_sink tokens and the n_recent most recent ones (p itself included); the others are *distant*. Every layer keeps its
values and its proximal keys; only a block's lowest (anchor) layer keeps distant keys. For distant tokens a non-anchor
layer uses the anchor's logits (share="scores") or its own query against the anchor's keys (share="keys"); proximal
and distant logits go through one softmax.

PodPolicy has the policy interface of attention.py (new_layer_state / attend):
  * incremental (state given): per-layer states that really drop a non-anchor layer's key as soon as it is distant for
    every later query; the layers of one session share a PodGroup through which a non-anchor layer reads its anchor's
    keys or logits of the same call. Llama.new_state creates the states of layers 0..L-1 in order, which links them.
  * batched (state None, positions 0..T-1): the same math on whole score matrices; a non-anchor layer reads what its
    anchor computed in the same forward pass (kept on the policy between the anchor's call and the block's last layer).

EdgeInfinitePodPolicy is "edgeinfinite+pod": the segment cache, memory and gate of docs/edgeinfinite.md with PoD applied
to the window; non-anchor layers compress with their anchor's pre-RoPE keys.

Also here: block validation, the KV-bytes formula of the contract, and the PoD adapter GGUF (kind "pod", or
"edgeinfinite+pod" = an EdgeInfinite adapter plus the pod keys).
"""
from __future__ import annotations

import copy
import os
import tempfile
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import List, Optional, Sequence

import numpy as np
import torch

from .adapter import check_adapter_dims
from .attention import AttnCall, SegmentLayout, expand_kv, mix_memory
from .gguf import GGUFFile, GGUFWriter, T, read_gguf
from .memory import compress, empty_memory, no_autocast

SHARES = ("scores", "keys")
ARCH = "edgeinf-adapter"
VERSION = 1
KIND_POD = "pod"
KIND_EI_POD = "edgeinfinite+pod"


# ----------------------------------------------------------------------------------------------------------
# Blocks
# ----------------------------------------------------------------------------------------------------------

def blocks_from_starts(starts: Sequence[int], n_layers: int) -> List[List[int]]:
    """Block start layers -> blocks (lists of layers). Raises ValueError unless starts is strictly increasing, begins
    at 0 and stays below n_layers ("Adapter GGUF" refusals)."""
    starts = [int(s) for s in starts]
    if n_layers <= 0:
        raise ValueError(f"pod: n_layers {n_layers} must be > 0")
    if not starts:
        raise ValueError("pod: no blocks (block_starts is empty)")
    if starts[0] != 0:
        raise ValueError(f"pod: the first block must start at layer 0 (block_starts[0] = {starts[0]})")
    for a, b in zip(starts, starts[1:]):
        if b <= a:
            raise ValueError(f"pod: block_starts must be strictly increasing ({a} then {b})")
    if starts[-1] >= n_layers:
        raise ValueError(f"pod: block start {starts[-1]} is not a layer of a {n_layers}-layer model")
    ends = starts[1:] + [n_layers]
    return [list(range(a, b)) for a, b in zip(starts, ends)]


def starts_from_blocks(blocks: Sequence[Sequence[int]], n_layers: Optional[int] = None) -> List[int]:
    """Blocks (lists of consecutive layers, in order, covering 0..L-1) -> their start layers. With n_layers, the
    blocks must cover exactly 0..n_layers-1. Raises ValueError naming what is wrong."""
    flat = [int(l) for b in blocks for l in b]
    if not blocks or any(len(b) == 0 for b in blocks):
        raise ValueError(f"pod: blocks {list(map(list, blocks))} contain an empty block")
    if flat != list(range(len(flat))):
        raise ValueError(f"pod: blocks {list(map(list, blocks))} do not cover layers 0..{len(flat) - 1} "
                         f"consecutively, in order, each once")
    if n_layers is not None and len(flat) != n_layers:
        raise ValueError(f"pod: blocks cover {len(flat)} layers, the model has {n_layers}")
    return [int(b[0]) for b in blocks]


def kv_bytes_held(n: int, n_layers: int, n_blocks: int, kv_dim: int, n_sink: int, n_recent: int,
                  elem: int = 4) -> int:
    """docs/pod.md "KV bytes": bytes a pod cache holds between calls after n tokens (values and anchor keys for every
    token, non-anchor keys for the n_sink + n_recent - 1 tokens the next query still sees as proximal)."""
    own = min(n, n_sink + n_recent - 1)
    return elem * kv_dim * ((n_layers + n_blocks) * n + (n_layers - n_blocks) * own)


def kv_saving(n: int, n_layers: int, n_blocks: int, n_sink: int, n_recent: int) -> float:
    """Fraction of full attention's KV bytes that pod saves after n tokens (-> (L-B)/(2L) for long inputs)."""
    full = 2 * n_layers * n
    return 1.0 - kv_bytes_held(n, n_layers, n_blocks, 1, n_sink, n_recent, 1) / full if n else 0.0


# ----------------------------------------------------------------------------------------------------------
# Masks ("Proximal and distant")
# ----------------------------------------------------------------------------------------------------------

def proximal_mask(q_pos: torch.Tensor, k_pos: torch.Tensor, n_sink: int, n_recent: int) -> torch.Tensor:
    """(T, S) bool: key position k_pos[s] is proximal for the query at q_pos[t] (sink or among the n_recent most recent
    positions up to the query itself; never in the query's future). CPU int64 inputs."""
    q, k = q_pos[:, None], k_pos[None, :]
    return (k <= q) & ((k < n_sink) | (k > q - n_recent))


def distant_mask(q_pos: torch.Tensor, k_pos: torch.Tensor, n_sink: int, n_recent: int) -> torch.Tensor:
    """(T, S) bool: key position k_pos[s] is distant for the query at q_pos[t]: n_sink <= k <= q - n_recent."""
    q, k = q_pos[:, None], k_pos[None, :]
    return (k >= n_sink) & (k <= q - n_recent)


def softmax_values(s: torch.Tensor, v: torch.Tensor, out_dtype) -> torch.Tensor:
    """softmax over the last dim of the masked logits s (B, H, T, S; -inf = not seen) times the values v (B, Hkv, S,
    D), exactly as attention.attend_groups does it for one score set (so pod without distant tokens is bit-identical
    to full). A query that sees nothing gets zeros."""
    H = s.shape[1]
    p = torch.nan_to_num(torch.softmax(s, dim=-1), nan=0.0)
    return torch.matmul(p, expand_kv(v, H).to(s.dtype)).to(out_dtype)


def _logits(q: torch.Tensor, k: torch.Tensor, scale: float, cdt) -> torch.Tensor:
    """scale · q kᵀ: q (B, H, T, D), k (B, Hkv, S, D) -> (B, H, T, S) in cdt, query head h against KV head
    h // (H/Hkv). The same expression as attention.attend_groups."""
    return torch.matmul(q.to(cdt), expand_kv(k, q.shape[1]).to(cdt).transpose(-1, -2)) * scale


# ----------------------------------------------------------------------------------------------------------
# Incremental state
# ----------------------------------------------------------------------------------------------------------

class PodGroup:
    """The layer states of one session, so a non-anchor layer can read its anchor's keys (share=keys) or the logits
    the anchor computed for the current call (share=scores). States are added in layer order."""

    def __init__(self, n_layers: int):
        self.n_layers = n_layers
        self.states: List["PodLayerState"] = []


class PodLayerState:
    """Per-layer incremental state: values of every token (v, v_pos: positions 0..n-1 in order), this layer's own keys
    (k, k_pos: every token for an anchor; for a non-anchor only those still proximal for a later query), and, for an
    anchor under share=scores, the logits of the last call (scores (B, H, T, n) before masking, scores_pos)."""

    def __init__(self, layer: int, anchor: int, batch: int, n_kv: int, head_dim: int, device, dtype, group: PodGroup):
        self.layer, self.anchor, self.group = layer, anchor, group
        self.is_anchor = layer == anchor
        self.k = torch.zeros(batch, n_kv, 0, head_dim, device=device, dtype=dtype)
        self.v = torch.zeros(batch, n_kv, 0, head_dim, device=device, dtype=dtype)
        self.k_pos = torch.zeros(0, dtype=torch.long)
        self.v_pos = torch.zeros(0, dtype=torch.long)
        self.scores: Optional[torch.Tensor] = None
        self.scores_pos: Optional[torch.Tensor] = None
        self.next_pos = 0

    def __len__(self):
        """Tokens whose values this layer holds (every token seen)."""
        return self.v.shape[2]

    @property
    def n_keys(self) -> int:
        return self.k.shape[2]

    def nbytes(self) -> int:
        """KV bytes this layer holds now (its keys and values; transient anchor logits are not KV)."""
        return self.k.numel() * self.k.element_size() + self.v.numel() * self.v.element_size()

    def anchor_state(self) -> "PodLayerState":
        return self.group.states[self.anchor]


def session_kv_bytes(layer_states) -> int:
    """Total KV bytes held by a session's pod layer states."""
    return sum(s.nbytes() for s in layer_states)


# ----------------------------------------------------------------------------------------------------------
# The policy
# ----------------------------------------------------------------------------------------------------------

class PodPolicy:
    """pod (docs/pod.md). blocks: lists of consecutive layers covering 0..L-1 in order (e.g. [[0, 1], [2], [3, 4, 5]]);
    n_sink >= 0, n_recent >= 1; share "scores" or "keys"."""
    name = "pod"

    def __init__(self, blocks: Sequence[Sequence[int]], n_sink: int, n_recent: int, share: str = "scores"):
        self.starts = starts_from_blocks(blocks)
        self.blocks = [list(map(int, b)) for b in blocks]
        self.n_layers = sum(len(b) for b in self.blocks)
        if n_sink < 0:
            raise ValueError(f"pod: n_sink {n_sink} < 0")
        if n_recent < 1:
            raise ValueError(f"pod: n_recent {n_recent} < 1 (a query always sees itself)")
        if share not in SHARES:
            raise ValueError(f"pod: share {share!r} is neither 'scores' nor 'keys'")
        self.n_sink, self.n_recent, self.share = int(n_sink), int(n_recent), share
        self.anchor_of = [b[0] for b in self.blocks for _ in b]
        self._group: Optional[PodGroup] = None
        self._batched = {}   # anchor layer -> (what its batched call left for its block, the call's shape)

    @classmethod
    def from_starts(cls, starts: Sequence[int], n_layers: int, n_sink: int, n_recent: int, share: str = "scores"):
        return cls(blocks_from_starts(starts, n_layers), n_sink, n_recent, share)

    @property
    def n_blocks(self) -> int:
        return len(self.blocks)

    def describe(self) -> str:
        return (f"pod share={self.share} n_sink={self.n_sink} n_recent={self.n_recent} blocks="
                + ",".join(f"{b[0]}-{b[-1]}" if len(b) > 1 else str(b[0]) for b in self.blocks))

    def _check_layer(self, cfg, layer: int):
        if cfg.n_layers != self.n_layers:
            raise ValueError(f"pod: blocks cover {self.n_layers} layers, the model has {cfg.n_layers}")
        if not 0 <= layer < self.n_layers:
            raise ValueError(f"pod: layer {layer} out of range")

    # -- incremental --
    def new_layer_state(self, cfg, layer: int, batch: int, device, dtype) -> PodLayerState:
        """Layer 0 opens a new session group; layers 1..L-1 must follow in order and join it."""
        self._check_layer(cfg, layer)
        if layer == 0:
            self._group = PodGroup(self.n_layers)
        g = self._group
        if g is None or len(g.states) != layer:
            raise ValueError(f"pod: layer states must be created in order 0..{self.n_layers - 1} (got layer {layer})")
        st = PodLayerState(layer, self.anchor_of[layer], batch, cfg.n_kv_heads, cfg.head_dim, device, dtype, g)
        g.states.append(st)
        return st

    def attend(self, call: AttnCall, state: Optional[PodLayerState]) -> torch.Tensor:
        if state is None:
            return self._attend_batched(call)
        return self._attend_incremental(call, state)

    def _attend_incremental(self, call: AttnCall, st: PodLayerState) -> torch.Tensor:
        pos = call.pos
        p_first, p_last = int(pos[0]), int(pos[-1])
        if p_first != st.next_pos or p_last - p_first != len(pos) - 1:
            raise ValueError(f"pod: positions {p_first}..{p_last} do not continue the cache (next position "
                             f"{st.next_pos})")
        if st.layer != call.layer:
            raise ValueError(f"pod: state of layer {st.layer} given to layer {call.layer}")
        q = call.rope.apply(call.q0, pos)
        k = call.rope.apply(call.k0, pos)
        st.k = torch.cat([st.k, k.to(st.k.dtype)], dim=2)
        st.v = torch.cat([st.v, call.v.to(st.v.dtype)], dim=2)
        st.k_pos = torch.cat([st.k_pos, pos.cpu()])
        st.v_pos = torch.cat([st.v_pos, pos.cpu()])
        cdt = torch.float64 if q.dtype == torch.float64 else torch.float32
        dev = q.device
        own = _logits(q, st.k, call.scale, cdt)                       # (B, H, T, n_keys)
        prox = proximal_mask(pos, st.v_pos, self.n_sink, self.n_recent)
        dist = distant_mask(pos, st.v_pos, self.n_sink, self.n_recent)
        if st.is_anchor:
            # the anchor holds every key: its logits are indexed like the values
            if self.share == "scores":
                st.scores, st.scores_pos = own, pos.clone()
            s = own.masked_fill(~(prox | dist).to(dev), float("-inf"))
        else:
            # own keys: scatter into value positions (v_pos is 0..n-1, so a key's column is its position)
            have = torch.zeros(len(st.v_pos), dtype=torch.bool)
            have[st.k_pos] = True
            if bool((prox & ~have[None, :]).any()):
                raise AssertionError(f"pod layer {st.layer}: a proximal key was dropped")
            n, B, H, Tq = len(st.v_pos), own.shape[0], own.shape[1], own.shape[2]
            s_own = torch.full((B, H, Tq, n), float("-inf"), dtype=cdt, device=dev)
            s_own[..., st.k_pos.to(dev)] = own
            a = st.anchor_state()
            if a.next_pos != p_last + 1 or len(a.v_pos) != n:
                raise AssertionError(f"pod layer {st.layer}: anchor layer {a.layer} has not run this call")
            if self.share == "scores":
                if a.scores is None or not torch.equal(a.scores_pos, pos):
                    raise AssertionError(f"pod layer {st.layer}: anchor logits of this call missing")
                shared = a.scores
            else:
                shared = _logits(q, a.k, call.scale, cdt)              # own query, anchor keys (all positions)
            s = torch.where(prox.to(dev), s_own, torch.where(dist.to(dev), shared,
                                                             torch.full_like(s_own, float("-inf"))))
        out = softmax_values(s, st.v, q.dtype)
        st.next_pos = p_last + 1
        if not st.is_anchor:
            # drop keys that are distant for the next query (and so for every later one)
            keep = (st.k_pos < self.n_sink) | (st.k_pos > st.next_pos - self.n_recent)
            if not bool(keep.all()):
                idx = torch.nonzero(keep).reshape(-1)
                st.k = st.k.index_select(2, idx.to(st.k.device))
                st.k_pos = st.k_pos[idx]
        if st.is_anchor and self.share == "scores" and self.anchor_of.count(st.layer) == 1:
            st.scores = st.scores_pos = None   # a block of one layer: nobody reads them
        return out

    # -- batched --
    def _attend_batched(self, call: AttnCall) -> torch.Tensor:
        T_ = call.q0.shape[2]
        pos = call.pos
        if T_ and (int(pos[0]) != 0 or int(pos[-1]) != T_ - 1):
            raise ValueError("pod: the batched path needs positions 0..T-1")
        l = call.layer
        if not 0 <= l < self.n_layers:
            raise ValueError(f"pod: layer {l} out of range for blocks covering {self.n_layers} layers")
        q = call.rope.apply(call.q0, pos)
        k = call.rope.apply(call.k0, pos)
        cdt = torch.float64 if q.dtype == torch.float64 else torch.float32
        dev = q.device
        own = _logits(q, k, call.scale, cdt)                          # (B, H, T, T)
        prox = proximal_mask(pos, pos, self.n_sink, self.n_recent).to(dev)
        dist = distant_mask(pos, pos, self.n_sink, self.n_recent).to(dev)
        anchor = self.anchor_of[l]
        shape = (call.q0.shape[0], T_)
        if l == anchor:
            if self.anchor_of.count(l) > 1:
                self._batched[l] = (own if self.share == "scores" else k, shape)
            else:
                self._batched.pop(l, None)
            s = own.masked_fill(~(prox | dist), float("-inf"))
        else:
            kept = self._batched.get(anchor)
            if kept is None or kept[1] != shape:
                raise AssertionError(f"pod layer {l}: anchor layer {anchor} has not run this forward pass")
            shared = kept[0] if self.share == "scores" else _logits(q, kept[0], call.scale, cdt)
            if l == self.blocks[self.starts.index(anchor)][-1]:
                del self._batched[anchor]   # the block's last layer: free the anchor's tensors
            s = torch.where(prox, own, torch.where(dist, shared, torch.full_like(own, float("-inf"))))
        return softmax_values(s, call.v, q.dtype)


# ----------------------------------------------------------------------------------------------------------
# edgeinfinite+pod (docs/pod.md, "edgeinfinite+pod")
# ----------------------------------------------------------------------------------------------------------

class EIPodLayerState:
    """Per-layer state of edgeinfinite+pod: sink K/V; the cached non-sink tokens' values (win_v, win_v_pos, contiguous
    positions) and this layer's own keys of them (win_k, win_k_pos: all for an anchor, the proximal ones for a
    non-anchor); their memory keys/values (km, vm: what compression reads; a non-anchor's km are built from its
    anchor's pre-RoPE keys); the memory M, z and counters. An anchor also keeps what its block's other layers read
    during the current call: its rotated queries (call_q) and pre-RoPE keys (call_k0) of the call's tokens, and its
    rotated keys of every non-sink token the call's queries may see (call_keys, call_keys_pos; taken before the call
    evicts anything)."""

    def __init__(self, layer: int, anchor: int, batch: int, n_kv: int, head_dim: int, device, dtype, group: dict):
        self.layer, self.anchor, self.group = layer, anchor, group
        self.is_anchor = layer == anchor
        z4 = lambda dt: torch.zeros(batch, n_kv, 0, head_dim, device=device, dtype=dt)  # noqa: E731
        self.sink_k, self.sink_v, self.win_k, self.win_v = z4(dtype), z4(dtype), z4(dtype), z4(dtype)
        self.sink_pos, self.win_k_pos, self.win_v_pos = (torch.zeros(0, dtype=torch.long) for _ in range(3))
        mdt = torch.float64 if dtype == torch.float64 else torch.float32
        self.km, self.vm = z4(mdt), z4(mdt)
        self.M, self.z = empty_memory(batch, n_kv, head_dim, device, mdt)
        self.compressions = 0
        self.evictions = 0
        self.next_pos = 0
        self.call_q = self.call_k0 = self.call_pos = self.call_keys = self.call_keys_pos = None

    def __len__(self):
        """Tokens cached (sinks + window), edgeinfinite's kv_tokens."""
        return self.sink_v.shape[2] + self.win_v.shape[2]

    @property
    def n_keys(self) -> int:
        return self.sink_k.shape[2] + self.win_k.shape[2]

    def nbytes(self) -> int:
        """KV bytes held (sink and window keys and values of this layer)."""
        return sum(t.numel() * t.element_size() for t in (self.sink_k, self.sink_v, self.win_k, self.win_v))

    def memory_nbytes(self) -> int:
        return self.M.numel() * self.M.element_size() + self.z.numel() * self.z.element_size()

    def anchor_state(self) -> "EIPodLayerState":
        return self.group[self.anchor]


def _cat(a, b, dim=2):
    return torch.cat([a, b.to(a.dtype)], dim=dim)


class EdgeInfinitePodPolicy:
    """edgeinfinite+pod: EdgeInfinite's segment cache (n_sink, window, seg), memory and gate (`adapter`, an
    EdgeInfAdapter) with PoD on the cached window (blocks, n_recent <= window, share). routing as EdgeInfinitePolicy.
    The batched path (state None, positions 0..T-1) runs the same per-piece algorithm on the whole sequence with
    throw-away states, an anchor's state kept until its block's last layer has run."""
    name = "edgeinfinite+pod"

    def __init__(self, blocks, n_sink: int, window: int, seg: int, n_recent: int, share: str, adapter,
                 eps: Optional[float] = None, routing: bool = True):
        self.pod = PodPolicy(blocks, n_sink, n_recent, share)   # validates blocks, n_recent, share
        self.layout = SegmentLayout(n_sink, window, seg)
        if n_recent > window:
            raise ValueError(f"edgeinfinite+pod: n_recent {n_recent} > window {window}")
        if adapter is None:
            raise ValueError("edgeinfinite+pod needs an adapter (gate weights)")
        self.adapter = adapter
        self.eps = float(adapter.eps if eps is None else eps)
        self.routing = routing
        self.n_sink, self.n_recent, self.share = int(n_sink), int(n_recent), share
        self.blocks, self.anchor_of, self.n_layers = self.pod.blocks, self.pod.anchor_of, self.pod.n_layers
        self._group = None
        self._batched = {}

    def new_layer_state(self, cfg, layer: int, batch: int, device, dtype) -> EIPodLayerState:
        """Layer 0 opens a new session group; layers 1..L-1 must follow in order and join it."""
        self.pod._check_layer(cfg, layer)
        if layer == 0:
            self._group = {}
        if self._group is None or len(self._group) != layer:
            raise ValueError(f"edgeinfinite+pod: layer states must be created in order 0..{self.n_layers - 1}")
        st = EIPodLayerState(layer, self.anchor_of[layer], batch, cfg.n_kv_heads, cfg.head_dim, device, dtype,
                             self._group)
        self._group[layer] = st
        return st

    def attend(self, call: AttnCall, state: Optional[EIPodLayerState]) -> torch.Tensor:
        pos = call.pos
        l = call.layer
        if state is None:
            T_ = call.q0.shape[2]
            if T_ and (int(pos[0]) != 0 or int(pos[-1]) != T_ - 1):
                raise ValueError("edgeinfinite+pod: the batched path needs positions 0..T-1")
            a = self.anchor_of[l]
            group = {} if l == a else self._batched.get(a)
            if group is None:
                raise AssertionError(f"edgeinfinite+pod layer {l}: anchor layer {a} has not run this forward pass")
            state = EIPodLayerState(l, a, call.q0.shape[0], call.k0.shape[1], call.q0.shape[3], call.q0.device,
                                    call.q0.dtype, group)
            group[l] = state
            last = self.blocks[self.pod.starts.index(a)][-1]
            if l == a and last != l:
                self._batched[a] = group
            elif l == last:
                self._batched.pop(a, None)
        if state.layer != l:
            raise ValueError(f"edgeinfinite+pod: state of layer {state.layer} given to layer {l}")
        p_first, p_last = int(pos[0]), int(pos[-1])
        if p_first != state.next_pos or p_last - p_first != len(pos) - 1:
            raise ValueError(f"edgeinfinite+pod: positions {p_first}..{p_last} do not continue the cache (next "
                             f"position {state.next_pos})")
        if state.is_anchor:
            ns = int((pos >= self.n_sink).sum())
            state.call_q = call.rope.apply(call.q0, pos)
            state.call_k0, state.call_pos = call.k0, pos.clone()
            state.call_keys = _cat(state.win_k, call.rope.apply(call.k0[:, :, len(pos) - ns:], pos[len(pos) - ns:]))
            state.call_keys_pos = torch.cat([state.win_k_pos, pos[len(pos) - ns:]])
        outs = [self._piece(call, state, a, b) for a, b in self.layout.pieces(p_first, len(pos))]
        state.next_pos = p_last + 1
        return outs[0] if len(outs) == 1 else torch.cat(outs, dim=2)

    def _evict(self, st: EIPodLayerState, e: int):
        """Segment e (the oldest cached) is compressed into memory and leaves the cache."""
        lay = self.layout
        first, S = lay.n_sink + e * lay.seg, lay.seg
        if st.win_v.shape[2] < S or int(st.win_v_pos[0]) != first:
            raise AssertionError(f"evicting segment {e}: cache does not start with it")
        with no_autocast(st.M.device):
            st.M, st.z = compress(st.M, st.z, st.km[:, :, :S], st.vm[:, :, :S], self.eps)
        st.km, st.vm = st.km[:, :, S:], st.vm[:, :, S:]
        st.win_v, st.win_v_pos = st.win_v[:, :, S:], st.win_v_pos[S:]
        gone = st.win_k_pos < first + S
        if not st.is_anchor and bool(gone.any()):
            raise AssertionError(f"layer {st.layer}: a key of evicted segment {e} was still held")
        st.win_k, st.win_k_pos = st.win_k[:, :, int(gone.sum()):], st.win_k_pos[int(gone.sum()):]
        st.compressions += 1
        st.evictions += 1

    def _piece(self, call: AttnCall, st: EIPodLayerState, a: int, b: int) -> torch.Tensor:
        """Output (B, H, b-a, D) of the call's tokens a..b-1 (one sink run or one segment)."""
        lay = self.layout
        pos = call.pos[a:b]
        p0 = int(pos[0])
        q0, k0, v = call.q0[:, :, a:b], call.k0[:, :, a:b], call.v[:, :, a:b]
        q, k = call.rope.apply(q0, pos), call.rope.apply(k0, pos)
        cdt = torch.float64 if q.dtype == torch.float64 else torch.float32
        dev, H = q.device, q.shape[1]
        if p0 < lay.n_sink:   # sinks: all proximal, own keys
            st.sink_k, st.sink_v = _cat(st.sink_k, k), _cat(st.sink_v, v)
            st.sink_pos = torch.cat([st.sink_pos, pos])
            allowed = (st.sink_pos[None, :] <= pos[:, None]).to(dev)
            s = _logits(q, st.sink_k, call.scale, cdt).masked_fill(~allowed, float("-inf"))
            return self._mix(call, st, a, b, softmax_values(s, st.sink_v, q.dtype))
        j = lay.segment(p0)
        if (p0 - lay.n_sink) % lay.seg == 0 and j - lay.W - 1 >= 0:
            self._evict(st, j - lay.W - 1)
        st.win_v, st.win_k = _cat(st.win_v, v), _cat(st.win_k, k)
        st.win_v_pos, st.win_k_pos = torch.cat([st.win_v_pos, pos]), torch.cat([st.win_k_pos, pos])
        an = st.anchor_state()
        mdt = st.M.dtype
        with no_autocast(st.M.device):
            xn = call.x_norm[:, a:b].to(mdt)
            if st.is_anchor:
                k0_mem = k0
            else:
                if an.call_pos is None or int(an.call_pos[0]) > p0 or int(an.call_pos[-1]) < int(pos[-1]):
                    raise AssertionError(f"edgeinfinite+pod layer {st.layer}: anchor {an.layer} has not run this call")
                k0_mem = an.call_k0[:, :, p0 - int(an.call_pos[0]):int(pos[-1]) + 1 - int(an.call_pos[0])]
            st.km = _cat(st.km, self.adapter.mem_k(call.layer, xn, k0_mem).to(mdt))
            st.vm = _cat(st.vm, self.adapter.mem_v(call.layer, xn, v).to(mdt))
        wpos = st.win_v_pos
        prox = proximal_mask(pos, wpos, self.n_sink, self.n_recent)
        dist = distant_mask(pos, wpos, self.n_sink, self.n_recent)
        own = _logits(q, st.win_k, call.scale, cdt)
        if st.is_anchor:
            s_win = own.masked_fill(~(prox | dist).to(dev), float("-inf"))
        else:
            col = st.win_k_pos - int(wpos[0])
            have = torch.zeros(len(wpos), dtype=torch.bool)
            have[col] = True
            if bool((prox & ~have[None, :]).any()):
                raise AssertionError(f"edgeinfinite+pod layer {st.layer}: a proximal key was dropped")
            s_own = torch.full(own.shape[:-1] + (len(wpos),), float("-inf"), dtype=cdt, device=dev)
            s_own[..., col.to(dev)] = own
            kk = int(wpos[0]) - int(an.call_keys_pos[0])
            if kk < 0 or int(an.call_keys_pos[kk + len(wpos) - 1]) != int(wpos[-1]):
                raise AssertionError(f"edgeinfinite+pod layer {st.layer}: anchor keys do not cover the window")
            ak = an.call_keys[:, :, kk:kk + len(wpos)]
            if self.share == "scores":
                qa = an.call_q[:, :, p0 - int(an.call_pos[0]):int(pos[-1]) + 1 - int(an.call_pos[0])]
                shared = _logits(qa, ak, call.scale, cdt)
            else:
                shared = _logits(q, ak, call.scale, cdt)
            s_win = torch.where(prox.to(dev), s_own, torch.where(dist.to(dev), shared, torch.full_like(s_own,
                                                                                                     float("-inf"))))
        if st.sink_k.shape[2]:
            # as attention.attend_groups: sink logits with the slot-rotated query, one softmax, two value products
            qs = call.rope.apply(q0, lay.slot_positions(pos))
            s = torch.cat([_logits(qs, st.sink_k, call.scale, cdt), s_win], dim=-1)
            p = torch.nan_to_num(torch.softmax(s, dim=-1), nan=0.0)
            ns = st.sink_k.shape[2]
            local = (torch.matmul(p[..., :ns], expand_kv(st.sink_v, H).to(cdt))
                     + torch.matmul(p[..., ns:], expand_kv(st.win_v, H).to(cdt))).to(q.dtype)
        else:
            local = softmax_values(s_win, st.win_v, q.dtype)
        if not st.is_anchor:
            keep = st.win_k_pos > int(pos[-1]) + 1 - self.n_recent   # proximal for the next query
            st.win_k, st.win_k_pos = st.win_k[:, :, keep.to(st.win_k.device)], st.win_k_pos[keep]
        return self._mix(call, st, a, b, local)

    def _mix(self, call, st, a, b, local):
        return mix_memory(self.adapter, self.eps, self.routing, call, st, a, b, local)


# ----------------------------------------------------------------------------------------------------------
# Adapter GGUF (docs/pod.md, "Adapter GGUF")
# ----------------------------------------------------------------------------------------------------------

@dataclass
class PodConfig:
    """What a PoD adapter GGUF holds: the base model's dimensions, the blocks (start layers), the session defaults
    n_sink / n_recent / share, the δ the blocks were calibrated with and, optionally, the measured L×L similarity."""
    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    dim: int
    block_starts: List[int]
    n_sink: int
    n_recent: int
    share: str = "scores"
    delta: float = 1.0
    similarity: Optional[np.ndarray] = field(default=None, repr=False)

    def validate(self):
        """Raise ValueError for anything the contract refuses."""
        for name in ("n_layers", "n_heads", "n_kv_heads", "head_dim", "dim"):
            if getattr(self, name) <= 0:
                raise ValueError(f"pod adapter: {name} must be > 0")
        blocks_from_starts(self.block_starts, self.n_layers)
        check_delta(self.delta)
        if self.n_sink < 0 or self.n_recent < 1:
            raise ValueError(f"pod adapter: n_sink {self.n_sink} must be >= 0 and n_recent {self.n_recent} >= 1")
        if self.share not in SHARES:
            raise ValueError(f"pod adapter: share {self.share!r} is neither 'scores' nor 'keys'")
        if self.similarity is not None and np.shape(self.similarity) != (self.n_layers, self.n_layers):
            raise ValueError("pod adapter: similarity must be n_layer x n_layer")

    @classmethod
    def for_model(cls, cfg, block_starts, n_sink, n_recent, share="scores", delta=1.0, similarity=None):
        return cls(cfg.n_layers, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim, cfg.dim, list(block_starts), n_sink,
                   n_recent, share, delta, similarity)

    @property
    def blocks(self) -> List[List[int]]:
        return blocks_from_starts(self.block_starts, self.n_layers)

    def policy(self, share: Optional[str] = None) -> PodPolicy:
        """The `pod` policy with this adapter's blocks and defaults (share overridable)."""
        return PodPolicy(self.blocks, self.n_sink, self.n_recent, share or self.share)

    def ei_pod_policy(self, ei_adapter, share: Optional[str] = None, routing: bool = True) -> "EdgeInfinitePodPolicy":
        """The `edgeinfinite+pod` policy: the EdgeInfinite adapter's layout and gate, this adapter's blocks."""
        check_ei_pod(self, ei_adapter.n_sink, ei_adapter.window)
        return EdgeInfinitePodPolicy(self.blocks, ei_adapter.n_sink, ei_adapter.window, ei_adapter.seg, self.n_recent,
                                     share or self.share, ei_adapter, routing=routing)

    def check_model(self, cfg):
        """Raise ValueError naming the first dimension that differs from the base model's LlamaConfig."""
        check_adapter_dims(self, cfg)

    def _pod_keys(self, w: GGUFWriter):
        w.add("edgeinf.pod.n_sink", int(self.n_sink), T.UINT32)
        w.add("edgeinf.pod.n_recent", int(self.n_recent), T.UINT32)
        w.add("edgeinf.pod.share", self.share, T.STRING)
        w.add("edgeinf.pod.delta", float(self.delta), T.FLOAT32)
        w.add("edgeinf.pod.block_starts", [int(s) for s in self.block_starts], T.ARRAY, T.UINT32)
        if self.similarity is not None:
            w.add("edgeinf.pod.similarity", np.asarray(self.similarity, dtype=np.float32).reshape(-1), T.ARRAY,
                  T.FLOAT32)

    def save_gguf(self, path: str, ei_adapter=None, name: str = "edgeinf-pod-adapter"):
        """Write a kind "pod" adapter (no tensors) or, with an EdgeInfAdapter, a kind "edgeinfinite+pod" adapter: every
        key and tensor of the EdgeInfinite adapter plus the pod keys (its n_sink must equal ours, n_recent <=
        window)."""
        self.validate()
        w = GGUFWriter()
        if ei_adapter is None:
            w.add("general.architecture", ARCH, T.STRING)
            w.add("general.name", name, T.STRING)
            w.add("edgeinf.adapter.version", VERSION, T.UINT32)
            w.add("edgeinf.adapter.kind", KIND_POD, T.STRING)
            for key, v in (("n_layer", self.n_layers), ("n_head", self.n_heads), ("n_head_kv", self.n_kv_heads),
                           ("head_dim", self.head_dim), ("dim", self.dim)):
                w.add(f"edgeinf.adapter.{key}", int(v), T.UINT32)
            self._pod_keys(w)
        else:
            check_ei_pod(self, ei_adapter.n_sink, ei_adapter.window)
            fd, tmp = tempfile.mkstemp(suffix=".gguf")
            os.close(fd)
            try:
                ei_adapter.save_gguf(tmp, name=name)
                g = read_gguf(tmp)
            finally:
                os.unlink(tmp)
            for key, val in g.metadata.items():
                vt, et = g.types[key]
                if key == "edgeinf.adapter.kind":
                    val = KIND_EI_POD
                w.add(key, val, vt, et)
            self._pod_keys(w)
            for t in g.tensors.values():
                w.add_tensor(t.name, bytes(t.data), t.ne, t.ggml_type)
        w.write(path)


def check_delta(delta) -> float:
    """δ must lie in (0, 1]; raise ValueError otherwise (NaN included)."""
    d = float(delta)
    if not (0.0 < d <= 1.0):
        raise ValueError(f"pod: delta {delta} outside (0, 1]")
    return d


def check_ei_pod(pod: PodConfig, ei_n_sink: int, ei_window: int):
    """edgeinfinite+pod: one n_sink for both, and n_recent <= window (every evicted token is then distant)."""
    if pod.n_sink != ei_n_sink:
        raise ValueError(f"edgeinfinite+pod: edgeinf.pod.n_sink {pod.n_sink} != edgeinf.ei.n_sink {ei_n_sink}")
    if pod.n_recent > ei_window:
        raise ValueError(f"edgeinfinite+pod: n_recent {pod.n_recent} > window {ei_window}")


def _u32(g: GGUFFile, key: str, lo: int, hi: int) -> int:
    if key not in g.metadata:
        raise ValueError(f"pod adapter: key {key} missing")
    if g.types[key][0] not in (T.UINT8, T.UINT16, T.UINT32, T.UINT64, T.INT8, T.INT16, T.INT32, T.INT64):
        raise ValueError(f"pod adapter: key {key} is not an integer")
    v = int(g.metadata[key])
    if not lo <= v <= hi:
        raise ValueError(f"pod adapter: {key} = {v} outside [{lo}, {hi}]")
    return v


def load_pod_gguf(path_or_file, cfg=None):
    """Read a kind "pod" or "edgeinfinite+pod" adapter. Returns (PodConfig, EdgeInfAdapter or None). With cfg (the base
    model's LlamaConfig) an adapter for another model is refused. Raises ValueError with the offending key."""
    g = path_or_file if isinstance(path_or_file, GGUFFile) else read_gguf(path_or_file)
    if g.get("general.architecture") != ARCH:
        raise ValueError(f"not an edgeinf adapter: general.architecture is {g.get('general.architecture')!r}")
    ver = _u32(g, "edgeinf.adapter.version", 0, 1 << 30)
    if ver != VERSION:
        raise ValueError(f"adapter format version {ver} not supported (this reader knows {VERSION})")
    kind = g.get("edgeinf.adapter.kind")
    if kind not in (KIND_POD, KIND_EI_POD):
        raise ValueError(f"adapter kind {kind!r} has no pod section ({KIND_POD!r} or {KIND_EI_POD!r})")
    dims = {k: _u32(g, f"edgeinf.adapter.{k}", 1, 1 << 20) for k in ("n_layer", "n_head", "n_head_kv", "head_dim",
                                                                      "dim")}
    key = "edgeinf.pod.block_starts"
    if key not in g.metadata or g.types[key] != (T.ARRAY, T.UINT32):
        raise ValueError(f"pod adapter: key {key} (array of u32) missing")
    share = g.get("edgeinf.pod.share")
    if g.types.get("edgeinf.pod.share", (None,))[0] != T.STRING:
        raise ValueError("pod adapter: key edgeinf.pod.share (string) missing")
    if g.types.get("edgeinf.pod.delta", (None,))[0] != T.FLOAT32:
        raise ValueError("pod adapter: key edgeinf.pod.delta (f32) missing")
    sim = None
    if "edgeinf.pod.similarity" in g.metadata:
        if g.types["edgeinf.pod.similarity"] != (T.ARRAY, T.FLOAT32) or \
                len(g.metadata["edgeinf.pod.similarity"]) != dims["n_layer"] ** 2:
            raise ValueError("pod adapter: edgeinf.pod.similarity must be n_layer*n_layer f32")
        sim = np.asarray(g.metadata["edgeinf.pod.similarity"], dtype=np.float32).reshape(dims["n_layer"], -1)
    pc = PodConfig(dims["n_layer"], dims["n_head"], dims["n_head_kv"], dims["head_dim"], dims["dim"],
                   [int(s) for s in g.metadata[key]], _u32(g, "edgeinf.pod.n_sink", 0, 1 << 20),
                   _u32(g, "edgeinf.pod.n_recent", 1, 1 << 22), share, float(g.metadata["edgeinf.pod.delta"]), sim)
    pc.validate()
    if cfg is not None:
        pc.check_model(cfg)
    ei = None
    if kind == KIND_EI_POD:
        from .adapter import load_adapter_gguf   # the EdgeInfinite part is read by its own reader
        g2 = copy.copy(g)
        g2.metadata = OrderedDict(g.metadata)
        g2.metadata["edgeinf.adapter.kind"] = "edgeinfinite"
        ei = load_adapter_gguf(g2, cfg)
        check_ei_pod(pc, ei.n_sink, ei.window)
    elif g.tensors:
        raise ValueError(f"pod adapter: unexpected tensor {next(iter(g.tensors))} in a kind 'pod' adapter")
    return pc, ei
