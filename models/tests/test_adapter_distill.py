"""The distillation targets of models/train_adapter.py (class Distiller): the base model's own full causal attention
must split exactly into λ·A_ev + (1-λ)·A_cache, λ must be 0 before the first eviction, and the distillation loss
must reach the adapter's parameters (memory keys/values/queries and gate) through the memory chain."""
from __future__ import annotations

import os
import sys
import unittest

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from edgeinf_ref.adapter import EdgeInfAdapter  # noqa: E402
from edgeinf_ref.attention import EdgeInfinitePolicy, expand_kv  # noqa: E402
from edgeinf_ref.llama import Llama, LlamaConfig  # noqa: E402
from train_adapter import Distiller  # noqa: E402

torch.set_num_threads(1)
CFG = dict(vocab_size=96, dim=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=96, max_seq_len=128)
N_SINK, WINDOW, SEG = 4, 16, 8


def setup(seed=0):
    torch.manual_seed(seed)
    cfg = LlamaConfig(**CFG)
    model = Llama(cfg).double()
    for p in model.parameters():
        p.requires_grad_(False)
    ad = EdgeInfAdapter.for_model(cfg, rank=2, n_sink=N_SINK, window=WINDOW, seg=SEG, gate_bias=-1.0,
                                  generator=torch.Generator().manual_seed(seed)).double()
    with torch.no_grad():   # non-zero low-rank outputs, so every path carries gradient
        for n in ("mk_b", "mv_b", "mq_b"):
            getattr(ad, n).normal_(0, 0.1)
    return cfg, model, ad, EdgeInfinitePolicy(N_SINK, WINDOW, SEG, ad)


class DistillTargets(unittest.TestCase):
    def test_split_of_full_attention(self):
        """λ·A_ev + (1-λ)·A_cache == full causal attention, A_cache = softmax over the non-evicted keys."""
        cfg, model, ad, pol = setup()
        dist = Distiller(pol.layout)
        seen = []

        def probe(call, ns, a_mem, gate, use):
            lam, a_ev = dist.targets(call, ns)
            H, T = call.q0.shape[1], call.q0.shape[2]
            q = call.rope.apply(call.q0, call.pos)
            k = expand_kv(call.rope.apply(call.k0, call.pos), H)
            v = expand_kv(call.v, H)
            s = torch.matmul(q, k.transpose(-1, -2)) * call.scale
            causal = torch.ones(T, T, dtype=torch.bool).tril()
            full = torch.matmul(torch.softmax(s.masked_fill(~causal, float("-inf")), -1), v)[:, :, ns:]
            # independent evicted set: keys of segments 0 .. j-W-1 for a query in segment j
            ev = torch.zeros(T - ns, T, dtype=torch.bool)
            for i, p in enumerate(range(ns, T)):
                j = (p - ns) // SEG
                for e in range(max(0, j - WINDOW // SEG)):
                    ev[i, ns + e * SEG: ns + (e + 1) * SEG] = True
            keep = causal[ns:] & ~ev
            a_cache = torch.matmul(torch.softmax(s[:, :, ns:].masked_fill(~keep, float("-inf")), -1), v)
            mix = lam.unsqueeze(-1) * a_ev + (1 - lam.unsqueeze(-1)) * a_cache
            seen.append((float((mix - full).abs().max()), lam, ev))

        pol.probe = probe
        x = torch.randint(0, CFG["vocab_size"], (2, 90))
        model(x, policy=pol)
        self.assertEqual(len(seen), cfg.n_layers)
        for err, lam, ev in seen:
            self.assertLess(err, 1e-10)
            none = ~ev.any(-1)                        # queries with nothing evicted yet
            self.assertTrue(bool((lam[:, :, none] == 0).all()))
            self.assertTrue(bool((lam[:, :, ~none] > 0).all()) and bool((lam <= 1).all()))

    def test_loss_reaches_adapter(self):
        cfg, model, ad, pol = setup(1)
        dist = Distiller(pol.layout)
        pol.probe = dist
        x = torch.randint(0, CFG["vocab_size"], (2, 90))
        model(x, policy=pol)
        pol.probe = None
        mem, gate, lam = dist.loss()
        self.assertTrue(0 < lam < 1)
        (mem + gate).backward()
        for name in ("gate_w", "gate_b", "mk_a", "mk_b", "mv_b", "mq_b"):
            g = getattr(ad, name).grad
            self.assertIsNotNone(g, name)
            self.assertGreater(float(g.abs().sum()), 0.0, name)

    def test_no_eviction_no_loss(self):
        cfg, model, ad, pol = setup(2)
        dist = Distiller(pol.layout)
        pol.probe = dist
        model(torch.randint(0, CFG["vocab_size"], (1, N_SINK + WINDOW + SEG)), policy=pol)
        mem, gate, lam = dist.loss()
        self.assertEqual(float(mem), 0.0)
        self.assertEqual(float(gate), 0.0)


if __name__ == "__main__":
    unittest.main()
