"""Llama model of the edgeinf reference: the math of a llama.cpp `llama`-arch GGUF, in PyTorch.

RMSNorm (x * rsqrt(mean(x^2) + eps) * w), RoPE in llama.cpp's normal mode (adjacent pairs), GQA, SwiGLU FFN
(down(silu(gate(x)) * up(x))), no biases, final norm, optional tied embeddings. Used both for training
(batched, `model(tokens)`) and as the single source of truth the C engine is tested against (incremental,
`model(tokens, policy, state)` with an explicit cache).

Module names map 1:1 to GGUF tensor names (see export.py: GGUF_NAMES).
"""
from __future__ import annotations

from dataclasses import dataclass, asdict
from typing import List, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from .attention import AttnCall, Rope, attend, get_policy


@dataclass
class LlamaConfig:
    vocab_size: int = 8000
    dim: int = 384
    n_layers: int = 6
    n_heads: int = 6
    n_kv_heads: int = 2
    ffn_dim: int = 1024
    max_seq_len: int = 1024
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    tie_embeddings: bool = True

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    def to_dict(self) -> dict:
        return asdict(self)

    def validate(self):
        if self.dim % self.n_heads:
            raise ValueError("dim must be a multiple of n_heads")
        if self.n_heads % self.n_kv_heads:
            raise ValueError("n_heads must be a multiple of n_kv_heads")
        if self.head_dim % 2:
            raise ValueError("head_dim must be even (RoPE pairs)")


class RMSNorm(nn.Module):
    """x * rsqrt(mean(x^2) + eps) * w, computed in float32 (float64 if x is) whatever the autocast dtype."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        cdt = torch.float64 if x.dtype == torch.float64 else torch.float32
        xf = x.to(cdt)
        y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return (y * self.weight.to(cdt)).to(x.dtype)


class Attention(nn.Module):
    def __init__(self, cfg: LlamaConfig):
        super().__init__()
        self.cfg = cfg
        hd = cfg.head_dim
        self.wq = nn.Linear(cfg.dim, cfg.n_heads * hd, bias=False)     # attn_q
        self.wk = nn.Linear(cfg.dim, cfg.n_kv_heads * hd, bias=False)  # attn_k
        self.wv = nn.Linear(cfg.dim, cfg.n_kv_heads * hd, bias=False)  # attn_v
        self.wo = nn.Linear(cfg.n_heads * hd, cfg.dim, bias=False)     # attn_output

    def forward(self, x_norm, layer, pos, rope, policy, layer_state):
        B, T, _ = x_norm.shape
        c = self.cfg
        q0 = self.wq(x_norm).view(B, T, c.n_heads, c.head_dim).transpose(1, 2)
        k0 = self.wk(x_norm).view(B, T, c.n_kv_heads, c.head_dim).transpose(1, 2)
        v = self.wv(x_norm).view(B, T, c.n_kv_heads, c.head_dim).transpose(1, 2)
        call = AttnCall(layer=layer, q0=q0, k0=k0, v=v, pos=pos, rope=rope, x_norm=x_norm)
        o = attend(call, policy, layer_state)                       # (B, n_heads, T, head_dim)
        o = o.transpose(1, 2).reshape(B, T, c.n_heads * c.head_dim)
        return self.wo(o)


class FeedForward(nn.Module):
    def __init__(self, cfg: LlamaConfig):
        super().__init__()
        self.w1 = nn.Linear(cfg.dim, cfg.ffn_dim, bias=False)  # ffn_gate
        self.w3 = nn.Linear(cfg.dim, cfg.ffn_dim, bias=False)  # ffn_up
        self.w2 = nn.Linear(cfg.ffn_dim, cfg.dim, bias=False)  # ffn_down

    def forward(self, x):
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class Block(nn.Module):
    def __init__(self, cfg: LlamaConfig, layer: int):
        super().__init__()
        self.layer = layer
        self.attention_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.attention = Attention(cfg)
        self.ffn_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.feed_forward = FeedForward(cfg)

    def forward(self, x, pos, rope, policy, layer_state):
        h = x + self.attention(self.attention_norm(x), self.layer, pos, rope, policy, layer_state)
        return h + self.feed_forward(self.ffn_norm(h))


class InferenceState:
    """Per-sequence state of an incremental run: the next absolute position and one policy state per layer."""

    def __init__(self, policy, layer_states: List[object]):
        self.policy = policy
        self.layers = layer_states
        self.pos = 0


class Llama(nn.Module):
    """The model. forward(tokens (B,T) int64) -> logits (B,T,vocab)."""

    def __init__(self, cfg: LlamaConfig):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.tok_embeddings = nn.Embedding(cfg.vocab_size, cfg.dim)  # token_embd
        self.layers = nn.ModuleList([Block(cfg, i) for i in range(cfg.n_layers)])
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps)                     # output_norm
        self.output = None if cfg.tie_embeddings else nn.Linear(cfg.dim, cfg.vocab_size, bias=False)
        self.rope = Rope(cfg.head_dim, cfg.rope_theta)
        self.reset_parameters()

    def reset_parameters(self, std: float = 0.02):
        """GPT-2-style init: N(0, std), residual output projections scaled by 1/sqrt(2 * n_layers)."""
        for name, p in self.named_parameters():
            if p.dim() == 1:
                nn.init.ones_(p)
            elif name.endswith("wo.weight") or name.endswith("w2.weight"):
                nn.init.normal_(p, 0.0, std / (2 * self.cfg.n_layers) ** 0.5)
            else:
                nn.init.normal_(p, 0.0, std)

    def new_state(self, policy=None, batch: int = 1, device=None, dtype=None) -> InferenceState:
        """Fresh incremental-inference state (empty caches) for `policy` (None = full)."""
        policy = get_policy(policy)
        p = self.tok_embeddings.weight
        device = device or p.device
        dtype = dtype or p.dtype
        layers = [policy.new_layer_state(self.cfg, i, batch, device, dtype) for i in range(self.cfg.n_layers)]
        return InferenceState(policy, layers)

    def hidden(self, tokens, policy=None, state: Optional[InferenceState] = None):
        """Final-normed hidden states (B,T,dim). With `state`, tokens continue that sequence and the caches grow."""
        T = tokens.shape[1]
        if state is not None:
            policy = state.policy
            p0 = state.pos
        else:
            p0 = 0
        pos = torch.arange(p0, p0 + T, dtype=torch.long)  # CPU: RoPE tables are built there in float64
        x = self.tok_embeddings(tokens)
        for i, blk in enumerate(self.layers):
            x = blk(x, pos, self.rope, policy, None if state is None else state.layers[i])
        if state is not None:
            state.pos += T
        return self.norm(x)

    def logits_from_hidden(self, h):
        if self.output is None:
            return F.linear(h, self.tok_embeddings.weight)
        return self.output(h)

    def forward(self, tokens, policy=None, state: Optional[InferenceState] = None):
        return self.logits_from_hidden(self.hidden(tokens, policy, state))

    @torch.no_grad()
    def generate_greedy(self, prompt: List[int], n_new: int, policy=None, chunk: Optional[int] = None):
        """Greedy continuation via the incremental path. Returns (new token ids, logits (len(prompt)+n_new-1, V)).

        The prompt is prefilled in chunks of `chunk` tokens (None = all at once), then decoded one token at a time;
        the returned logits are those after every position (prompt positions and each decoded token but the last)."""
        dev = self.tok_embeddings.weight.device
        st = self.new_state(policy, 1)
        chunk = chunk or len(prompt)
        all_logits = []
        for s in range(0, len(prompt), chunk):
            t = torch.tensor([prompt[s:s + chunk]], dtype=torch.long, device=dev)
            all_logits.append(self.forward(t, state=st)[0])
        out = []
        last = all_logits[-1][-1]
        for i in range(n_new):
            nxt = int(torch.argmax(last))
            out.append(nxt)
            if i == n_new - 1:
                break
            lg = self.forward(torch.tensor([[nxt]], dtype=torch.long, device=dev), state=st)[0]
            all_logits.append(lg)
            last = lg[-1]
        return out, torch.cat(all_logits, dim=0)
