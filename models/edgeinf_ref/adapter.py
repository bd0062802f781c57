"""The EdgeInfinite memory-gating adapter: a small trainable module next to a frozen base Llama, and its GGUF.

Per layer l and query head h a gate g = sigmoid(w_{l,h} · x̂ + b_{l,h}) blends memory and local attention; an
optional rank-r low-rank pair per memory input (keys, values, queries) lets training shape what is written into
and read from memory (DESIGN.md §3.3: the gate alone does not learn retrieval). The math and the file format are
docs/edgeinfinite.md; this module is what models/train_adapter.py trains and the policies in attention.py read.

Parameters are stacked over layers (one tensor per kind) and sliced per layer; the GGUF stores them per layer as
`blk.N.ei_*` tensors, F32, in the usual (out, in) row-major layout.
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch
import torch.nn as nn

from .gguf import GGUFFile, GGUFWriter, T, read_gguf

ARCH = "edgeinf-adapter"
KIND = "edgeinfinite"
VERSION = 1
DEFAULT_EPS = 1e-6
# (GGUF tensor suffix, parameter name) of the low-rank pairs, in file order
LOWRANK = [("ei_mem_k_a", "mk_a"), ("ei_mem_k_b", "mk_b"), ("ei_mem_v_a", "mv_a"), ("ei_mem_v_b", "mv_b"),
           ("ei_mem_q_a", "mq_a"), ("ei_mem_q_b", "mq_b")]


def check_adapter_dims(ad, cfg):
    """Raise ValueError naming the first of an adapter's n_layers / n_heads / n_kv_heads / head_dim / dim that differs
    from the base model's LlamaConfig `cfg` (every adapter kind stores the same five, docs/edgeinfinite.md)."""
    for key, mine, theirs in (("n_layer", ad.n_layers, cfg.n_layers), ("n_head", ad.n_heads, cfg.n_heads),
                              ("n_head_kv", ad.n_kv_heads, cfg.n_kv_heads),
                              ("head_dim", ad.head_dim, cfg.head_dim), ("dim", ad.dim, cfg.dim)):
        if mine != theirs:
            raise ValueError(f"adapter was made for another model: edgeinf.adapter.{key} = {mine}, "
                             f"the base model has {theirs}")


class EdgeInfAdapter(nn.Module):
    """Gate (+ optional low-rank memory adapters) for every layer of one base model.

    gate_w (L, n_heads, dim), gate_b (L, n_heads); with rank r > 0: mk_a/mv_a/mq_a (L, r, dim) and
    mk_b/mv_b (L, kv_dim, r), mq_b (L, q_dim, r). Init: w = 0, b = gate_bias (memory almost off), A ~ N(0, a_std)
    (default 1/sqrt(dim)), B = 0 (so k_mem = k⁰, v_mem = v, q_mem = q⁰ until trained).
    n_sink/window/seg/eps are the session defaults written into the GGUF."""

    def __init__(self, n_layers: int, n_heads: int, n_kv_heads: int, head_dim: int, dim: int, rank: int = 0,
                 n_sink: int = 16, window: int = 512, seg: int = 128, eps: float = DEFAULT_EPS,
                 gate_bias: float = -6.0, a_std: Optional[float] = None, generator: Optional[torch.Generator] = None):
        super().__init__()
        for name, v in (("n_layers", n_layers), ("n_heads", n_heads), ("n_kv_heads", n_kv_heads),
                        ("head_dim", head_dim), ("dim", dim), ("seg", seg)):
            if v <= 0:
                raise ValueError(f"adapter: {name} must be > 0 (got {v})")
        if rank < 0 or n_sink < 0 or window < 0:
            raise ValueError("adapter: rank, n_sink and window must be >= 0")
        if window % seg:
            raise ValueError(f"adapter: window {window} is not a multiple of seg {seg}")
        if n_heads % n_kv_heads:
            raise ValueError("adapter: n_heads must be a multiple of n_kv_heads")
        if not 0 < eps < 1:
            raise ValueError(f"adapter: eps {eps} out of (0, 1)")
        self.n_layers, self.n_heads, self.n_kv_heads = n_layers, n_heads, n_kv_heads
        self.head_dim, self.dim, self.rank = head_dim, dim, rank
        self.n_sink, self.window, self.seg, self.eps = n_sink, window, seg, float(eps)
        kvd, qd = n_kv_heads * head_dim, n_heads * head_dim
        self.gate_w = nn.Parameter(torch.zeros(n_layers, n_heads, dim))
        self.gate_b = nn.Parameter(torch.full((n_layers, n_heads), float(gate_bias)))
        if rank:
            std = a_std if a_std is not None else 1.0 / math.sqrt(dim)

            def a():
                return nn.Parameter(torch.randn(n_layers, rank, dim, generator=generator) * std)
            self.mk_a, self.mv_a, self.mq_a = a(), a(), a()
            self.mk_b = nn.Parameter(torch.zeros(n_layers, kvd, rank))
            self.mv_b = nn.Parameter(torch.zeros(n_layers, kvd, rank))
            self.mq_b = nn.Parameter(torch.zeros(n_layers, qd, rank))

    @classmethod
    def for_model(cls, cfg, **kw) -> "EdgeInfAdapter":
        """An adapter shaped for a LlamaConfig `cfg` (kw: rank, n_sink, window, seg, eps, gate_bias, ...)."""
        return cls(cfg.n_layers, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim, cfg.dim, **kw)

    # -- the math (docs/edgeinfinite.md, "Memory" and "Gate"); all inputs are cast to the weights' use dtype --
    def _dt(self, x):
        return torch.float64 if x.dtype == torch.float64 else torch.float32

    def gate(self, layer: int, x_norm: torch.Tensor) -> torch.Tensor:
        """g = sigmoid(w · x̂ + b) per query head: x_norm (B, T, dim) -> (B, n_heads, T)."""
        dt = self._dt(x_norm)
        u = torch.matmul(x_norm.to(dt), self.gate_w[layer].to(dt).t()) + self.gate_b[layer].to(dt)  # (B,T,H)
        return torch.sigmoid(u).transpose(1, 2)

    def _lowrank(self, layer, x_norm, a_name, b_name, base, n_h):
        """base (B, n_h, T, hd) + ((x̂ · A) · B) reshaped to heads; base as it is when rank == 0."""
        dt = self._dt(x_norm)
        base = base.to(dt)
        if not self.rank:
            return base
        A, B_ = getattr(self, a_name)[layer].to(dt), getattr(self, b_name)[layer].to(dt)
        d = torch.matmul(torch.matmul(x_norm.to(dt), A.t()), B_.t())           # (B, T, n_h*hd)
        Bsz, T = x_norm.shape[0], x_norm.shape[1]
        return base + d.view(Bsz, T, n_h, self.head_dim).transpose(1, 2)

    def mem_k(self, layer, x_norm, k0):
        """k_mem = k⁰ + (x̂ A_k) B_k: (B, n_kv, T, hd)."""
        return self._lowrank(layer, x_norm, "mk_a", "mk_b", k0, self.n_kv_heads)

    def mem_v(self, layer, x_norm, v):
        """v_mem = v + (x̂ A_v) B_v: (B, n_kv, T, hd)."""
        return self._lowrank(layer, x_norm, "mv_a", "mv_b", v, self.n_kv_heads)

    def mem_q(self, layer, x_norm, q0):
        """q_mem = q⁰ + (x̂ A_q) B_q: (B, n_heads, T, hd)."""
        return self._lowrank(layer, x_norm, "mq_a", "mq_b", q0, self.n_heads)

    # -- bookkeeping --
    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def gate_params(self):
        return [self.gate_w, self.gate_b]

    def lowrank_params(self):
        return [getattr(self, n) for _, n in LOWRANK] if self.rank else []

    def check_model(self, cfg):
        """Raise ValueError naming the first dimension that differs from the base model's LlamaConfig."""
        check_adapter_dims(self, cfg)

    # -- GGUF (docs/edgeinfinite.md, "Adapter GGUF") --
    def save_gguf(self, path: str, name: str = "edgeinf-adapter"):
        """Write the adapter GGUF (all tensors F32)."""
        w = GGUFWriter()
        w.add("general.architecture", ARCH, T.STRING)
        w.add("general.name", name, T.STRING)
        w.add("edgeinf.adapter.version", VERSION, T.UINT32)
        w.add("edgeinf.adapter.kind", KIND, T.STRING)
        for key, v in (("n_layer", self.n_layers), ("n_head", self.n_heads), ("n_head_kv", self.n_kv_heads),
                       ("head_dim", self.head_dim), ("dim", self.dim)):
            w.add(f"edgeinf.adapter.{key}", v, T.UINT32)
        w.add("edgeinf.ei.n_sink", self.n_sink, T.UINT32)
        w.add("edgeinf.ei.window", self.window, T.UINT32)
        w.add("edgeinf.ei.seg", self.seg, T.UINT32)
        w.add("edgeinf.ei.eps", self.eps, T.FLOAT32)
        w.add("edgeinf.ei.rank", self.rank, T.UINT32)
        f32 = 0  # GGML_TYPE_F32

        def arr(p, l):
            return p[l].detach().to("cpu", torch.float32).numpy()
        for l in range(self.n_layers):
            w.add_tensor_array(f"blk.{l}.ei_gate.weight", arr(self.gate_w, l), f32)
            w.add_tensor_array(f"blk.{l}.ei_gate.bias", arr(self.gate_b, l), f32)
            for suffix, pname in (LOWRANK if self.rank else []):
                w.add_tensor_array(f"blk.{l}.{suffix}.weight", arr(getattr(self, pname), l), f32)
        w.write(path)


def _u32(g: GGUFFile, key: str, lo: int, hi: int) -> int:
    if key not in g.metadata:
        raise ValueError(f"adapter: key {key} missing")
    vt = g.types[key][0]
    if vt not in (T.UINT8, T.UINT16, T.UINT32, T.UINT64, T.INT8, T.INT16, T.INT32, T.INT64):
        raise ValueError(f"adapter: key {key} is not an integer")
    v = int(g.metadata[key])
    if not lo <= v <= hi:
        raise ValueError(f"adapter: {key} = {v} outside [{lo}, {hi}]")
    return v


def load_adapter_gguf(path_or_file, cfg=None) -> EdgeInfAdapter:
    """Read an adapter GGUF. With `cfg` (the base model's LlamaConfig) refuse, with a message naming the key, an
    adapter whose dimensions differ. Tensors may be F32 or F16 (read as float32). Raises ValueError."""
    g = path_or_file if isinstance(path_or_file, GGUFFile) else read_gguf(path_or_file)
    arch = g.get("general.architecture")
    if arch != ARCH:
        raise ValueError(f"not an edgeinf adapter: general.architecture is {arch!r}")
    ver = _u32(g, "edgeinf.adapter.version", 0, 1 << 30)
    if ver != VERSION:
        raise ValueError(f"adapter format version {ver} not supported (this reader knows {VERSION})")
    if g.get("edgeinf.adapter.kind") != KIND:
        raise ValueError(f"adapter kind {g.get('edgeinf.adapter.kind')!r} not supported ({KIND})")
    dims = {k: _u32(g, f"edgeinf.adapter.{k}", 1, 1 << 20) for k in ("n_layer", "n_head", "n_head_kv", "head_dim",
                                                                      "dim")}
    if cfg is not None:
        for key, theirs in (("n_layer", cfg.n_layers), ("n_head", cfg.n_heads), ("n_head_kv", cfg.n_kv_heads),
                            ("head_dim", cfg.head_dim), ("dim", cfg.dim)):
            if dims[key] != theirs:
                raise ValueError(f"adapter was made for another model: edgeinf.adapter.{key} = {dims[key]}, "
                                 f"the base model has {theirs}")
    n_sink = _u32(g, "edgeinf.ei.n_sink", 0, 1 << 20)
    window = _u32(g, "edgeinf.ei.window", 1, 1 << 22)
    seg = _u32(g, "edgeinf.ei.seg", 1, 1 << 20)
    rank = _u32(g, "edgeinf.ei.rank", 0, 1024)
    if window % seg:
        raise ValueError(f"adapter: window {window} is not a multiple of seg {seg}")
    if "edgeinf.ei.eps" not in g.metadata or g.types["edgeinf.ei.eps"][0] != T.FLOAT32:
        raise ValueError("adapter: key edgeinf.ei.eps (f32) missing")
    eps = float(g.metadata["edgeinf.ei.eps"])
    if dims["n_head"] % dims["n_head_kv"]:
        raise ValueError("adapter: n_head is not a multiple of n_head_kv")
    ad = EdgeInfAdapter(dims["n_layer"], dims["n_head"], dims["n_head_kv"], dims["head_dim"], dims["dim"],
                        rank=rank, n_sink=n_sink, window=window, seg=seg, eps=eps)
    kvd, qd = dims["n_head_kv"] * dims["head_dim"], dims["n_head"] * dims["head_dim"]
    want = {"ei_gate.weight": (dims["n_head"], dims["dim"]), "ei_gate.bias": (dims["n_head"],)}
    pmap = {"ei_gate.weight": "gate_w", "ei_gate.bias": "gate_b"}
    if rank:
        for suffix, pname in LOWRANK:
            rows = rank if pname.endswith("_a") else (qd if pname == "mq_b" else kvd)
            cols = dims["dim"] if pname.endswith("_a") else rank
            want[suffix + ".weight"], pmap[suffix + ".weight"] = (rows, cols), pname
    expected = set()
    with torch.no_grad():
        for l in range(dims["n_layer"]):
            for suffix, shape in want.items():
                name = f"blk.{l}.{suffix}"
                expected.add(name)
                ti = g.tensors.get(name)
                if ti is None:
                    raise ValueError(f"adapter: tensor {name} missing")
                if ti.ggml_type not in (0, 1):  # F32, F16
                    raise ValueError(f"adapter: tensor {name} has ggml type {ti.ggml_type} (F32 or F16 expected)")
                if ti.shape != shape:
                    raise ValueError(f"adapter: tensor {name} has shape {list(reversed(ti.shape))} (GGUF ne), "
                                     f"expected {list(reversed(shape))}")
                getattr(ad, pmap[suffix])[l].copy_(torch.from_numpy(np.ascontiguousarray(ti.to_numpy())))
    extra = [n for n in g.tensors if n not in expected]
    if extra:
        raise ValueError(f"adapter: unexpected tensor {extra[0]} (rank {rank})")
    return ad
