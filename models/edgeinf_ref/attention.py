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

Only `full` exists so far; the others are added next to it by their owners.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F

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


def _softmax_attend(q, k, v, allowed, scale):
    """softmax(q k^T * scale, masked by allowed (T,S) bool) v, in float32 (float64 if q is); returns q's dtype."""
    H = q.shape[1]
    cdt = torch.float64 if q.dtype == torch.float64 else torch.float32
    kk = expand_kv(k, H).to(cdt)
    vv = expand_kv(v, H).to(cdt)
    s = torch.matmul(q.to(cdt), kk.transpose(-1, -2)) * scale            # (B,H,T,S)
    s = s.masked_fill(~allowed, float("-inf"))
    p = torch.softmax(s, dim=-1)
    p = torch.nan_to_num(p, nan=0.0)
    return torch.matmul(p, vv).to(q.dtype)


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


def get_policy(policy):
    """None or "full" -> FullPolicy(); a policy object is returned as is."""
    if policy is None or policy == "full":
        return FullPolicy()
    if isinstance(policy, str):
        raise ValueError(f"unknown attention policy {policy!r} (known: full)")
    return policy


def attend(call: AttnCall, policy=None, layer_state=None) -> torch.Tensor:
    """The one attention entry point: dispatch `call` to `policy` (None = full causal) with its layer state."""
    return get_policy(policy).attend(call, layer_state)
