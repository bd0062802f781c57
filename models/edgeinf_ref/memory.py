"""EdgeInfinite's compressed memory (docs/edgeinfinite.md, "Memory"): the delta-rule update and the retrieval.

Per layer and KV head: M (hd x hd) and z (hd), zero at start. Everything here is functional (returns new tensors)
so the training path can backpropagate through a whole chain of compressions.

Precision: memory is float32 (float64 when the inputs are float64, so the float64 reference keeps its precision);
callers run these under `no_autocast` so bf16 autocast never touches it (bf16 memory overflows, DESIGN.md §3.3).
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F


def mem_dtype(x: torch.Tensor) -> torch.dtype:
    """float64 for float64 inputs (the reference), float32 for everything else (fp32/bf16/fp16)."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def no_autocast(device: torch.device):
    """A context in which autocast is off on `device` (a no-op context where torch has no autocast)."""
    if hasattr(torch, "autocast"):
        try:
            return torch.autocast(device_type=device.type, enabled=False)
        except RuntimeError:  # device type without autocast support
            pass
    return contextlib.nullcontext()


def sigma(x: torch.Tensor) -> torch.Tensor:
    """σ(u) = ELU(u) + 1: positive feature map of the linear-attention memory."""
    return F.elu(x) + 1.0


def empty_memory(batch: int, n_kv: int, head_dim: int, device, dtype):
    """Zero M (B, n_kv, hd, hd) and z (B, n_kv, hd)."""
    return (torch.zeros(batch, n_kv, head_dim, head_dim, device=device, dtype=dtype),
            torch.zeros(batch, n_kv, head_dim, device=device, dtype=dtype))


def compress(M: torch.Tensor, z: torch.Tensor, k_mem: torch.Tensor, v_mem: torch.Tensor, eps: float,
             weight: torch.Tensor = None):
    """Fold one evicted segment into memory (delta rule). k_mem, v_mem (B, n_kv, seg, hd) in M's dtype, the
    segment's tokens in order. Returns the new (M, z); the inputs are not modified.

        σK = σ(k_mem);  Vret = σK M / (σK z + ε);  M += w σKᵀ (v_mem − Vret);  z += w Σ_rows σK

    weight (B,) is a training-only device (models/train_adapter.py --dilute): w > 1 lets one segment stand for w
    segments like it, so a short row shows the memory a much longer one would hold (z grows with every token while
    the delta rule keeps a key's share of M fixed). The contract (docs/edgeinfinite.md) is w = 1: None."""
    sk = sigma(k_mem)
    vret = torch.matmul(sk, M) / (torch.matmul(sk, z.unsqueeze(-1)) + eps)
    dM, dz = torch.matmul(sk.transpose(-1, -2), v_mem - vret), sk.sum(dim=-2)
    if weight is not None:
        w = weight.to(M.dtype).view(-1, 1, 1)
        dM, dz = dM * w.unsqueeze(-1), dz * w
    return M + dM, z + dz


def retrieve(q_mem: torch.Tensor, M: torch.Tensor, z: torch.Tensor, eps: float) -> torch.Tensor:
    """A_mem = σ(q) M / (σ(q) z + ε) for queries q_mem (..., T, hd) against M (..., hd, hd), z (..., hd) whose
    leading dims broadcast with q's (the caller expands KV heads to query heads). Returns (..., T, hd)."""
    sq = sigma(q_mem)
    return torch.matmul(sq, M) / (torch.matmul(sq, z.unsqueeze(-1)) + eps)
