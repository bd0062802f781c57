"""Tests of the streaming / edgeinfinite policies and the adapter (docs/edgeinfinite.md).

The policies are checked against `naive_layer`, an independent per-query transcription of the contract (numpy,
complex-number RoPE, explicit visible sets and memory loop), then at model level: incremental == batched for
several chunkings, == full while nothing is evicted, gradients and fp32 memory under bf16 autocast.
"""
from __future__ import annotations

import math
import os
import sys
import tempfile
import unittest

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
MODELS = os.path.dirname(HERE)
sys.path.insert(0, MODELS)

from edgeinf_ref import attention as attn_mod  # noqa: E402
from edgeinf_ref.adapter import EdgeInfAdapter, load_adapter_gguf  # noqa: E402
from edgeinf_ref.attention import (AttnCall, EdgeInfinitePolicy, Rope, SegmentLayout,  # noqa: E402
                                   StreamingPolicy)
from edgeinf_ref.gguf import GGUFWriter, T, read_gguf  # noqa: E402
from edgeinf_ref.llama import Llama, LlamaConfig  # noqa: E402

torch.set_num_threads(1)
TINY = dict(vocab_size=96, dim=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=96, max_seq_len=128)


def tiny_model(seed=0, dtype=torch.float64, **kw):
    torch.manual_seed(seed)
    cfg = LlamaConfig(**{**TINY, **kw})
    m = Llama(cfg)
    with torch.no_grad():
        for _, p in m.named_parameters():
            if p.dim() == 1:
                p.uniform_(0.5, 1.5)
            else:
                p.normal_(0, 1.0 / math.sqrt(p.shape[1]))
    return m.to(dtype).eval(), cfg


def random_adapter(cfg, rank=4, n_sink=4, window=16, seg=8, seed=0, std=0.2, bias=0.0, dtype=torch.float64):
    """An adapter with every parameter random (non-trivial gate around sigmoid(bias), non-zero low-rank B)."""
    g = torch.Generator().manual_seed(seed)
    ad = EdgeInfAdapter.for_model(cfg, rank=rank, n_sink=n_sink, window=window, seg=seg)
    with torch.no_grad():
        for p in ad.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * std)
        ad.gate_b.add_(bias)
    return ad.to(dtype)


# ----------------------------------------------------------------------------------------------------------
# Independent transcription of the contract, one query at a time
# ----------------------------------------------------------------------------------------------------------

def _rot(x, p, theta):
    """RoPE (adjacent pairs) of vector x (D,) at position p, via complex numbers."""
    D = x.shape[0]
    c = x[0::2] + 1j * x[1::2]
    c = c * np.exp(1j * p * theta ** (-2.0 * np.arange(D // 2) / D))
    out = np.empty(D)
    out[0::2], out[1::2] = c.real, c.imag
    return out


def _sig(x):
    return np.where(x > 0, x + 1.0, np.exp(x))   # ELU(x) + 1


def naive_layer(q0, k0, v, xn, n_sink, window, seg, ad=None, layer=0, routing=True, theta=10000.0):
    """q0 (H,T,D), k0/v (Hkv,T,D), xn (T,dim) numpy float64 -> output (H,T,D) of streaming (ad None) or
    edgeinfinite, following docs/edgeinfinite.md literally. Also returns the number of compressions."""
    H, T, D = q0.shape
    Hkv = k0.shape[0]
    W = window // seg
    scale = 1.0 / math.sqrt(D)
    out = np.zeros((H, T, D))
    if ad is not None:
        P = {n: p.detach().double().numpy()[layer] for n, p in ad.named_parameters()}
        eps = ad.eps

        def lowrank(a, b, x):
            return P[b] @ (P[a] @ x) if ad.rank else 0.0
        kmem = np.stack([np.stack([k0[:, t].reshape(-1) + lowrank("mk_a", "mk_b", xn[t])]) for t in range(T)])
        kmem = kmem.reshape(T, Hkv, D)
        vmem = np.stack([v[:, t].reshape(-1) + lowrank("mv_a", "mv_b", xn[t]) for t in range(T)]).reshape(T, Hkv, D)
        qmem = np.stack([q0[:, t].reshape(-1) + lowrank("mq_a", "mq_b", xn[t]) for t in range(T)]).reshape(T, H, D)
        M = np.zeros((Hkv, D, D))
        z = np.zeros((Hkv, D))
    n_comp = 0
    for p in range(T):
        if p >= n_sink and (p - n_sink) % seg == 0:
            e = (p - n_sink) // seg - W - 1
            if e >= 0 and ad is not None:
                S = list(range(n_sink + e * seg, n_sink + (e + 1) * seg))
                for g in range(Hkv):
                    sK = _sig(np.stack([kmem[t, g] for t in S]))
                    Vret = (sK @ M[g]) / (sK @ z[g] + eps)[:, None]
                    M[g] = M[g] + sK.T @ (np.stack([vmem[t, g] for t in S]) - Vret)
                    z[g] = z[g] + sK.sum(0)
                n_comp += 1
        for h in range(H):
            g = h // (H // Hkv)
            sc, vals = [], []
            if p < n_sink:
                for s in range(p + 1):
                    sc.append(_rot(q0[h, p], p, theta) @ _rot(k0[g, s], s, theta) * scale)
                    vals.append(v[g, s])
            else:
                j = (p - n_sink) // seg
                p_fw = n_sink + max(0, j - W) * seg
                c = n_sink + (p - p_fw)
                for s in range(n_sink):
                    sc.append(_rot(q0[h, p], c, theta) @ _rot(k0[g, s], s, theta) * scale)
                    vals.append(v[g, s])
                for t in range(p_fw, p + 1):
                    sc.append(_rot(q0[h, p], p, theta) @ _rot(k0[g, t], t, theta) * scale)
                    vals.append(v[g, t])
            sc = np.array(sc)
            w = np.exp(sc - sc.max())
            local = (w / w.sum()) @ np.stack(vals)
            if ad is None or (routing and n_comp == 0):
                out[h, p] = local
                continue
            sq = _sig(qmem[p, h])
            amem = (sq @ M[g]) / (sq @ z[g] + eps)
            gate = 1.0 / (1.0 + np.exp(-(P["gate_w"][h] @ xn[p] + P["gate_b"][h])))
            out[h, p] = gate * amem + (1 - gate) * local
    return out, n_comp


class TestPoliciesVsNaive(unittest.TestCase):
    """One layer, random inputs: the policies (batched and incremental) equal the literal transcription."""

    def _inputs(self, T, seed=0, H=4, Hkv=2, D=8, dim=16):
        g = torch.Generator().manual_seed(seed)
        q0 = torch.randn(1, H, T, D, generator=g, dtype=torch.float64)
        k0 = torch.randn(1, Hkv, T, D, generator=g, dtype=torch.float64)
        v = torch.randn(1, Hkv, T, D, generator=g, dtype=torch.float64)
        xn = torch.randn(1, T, dim, generator=g, dtype=torch.float64)
        return q0, k0, v, xn

    def _adapter(self, rank, n_sink, window, seg):
        ad = EdgeInfAdapter(1, 4, 2, 8, 16, rank=rank, n_sink=n_sink, window=window, seg=seg)
        g = torch.Generator().manual_seed(7)
        with torch.no_grad():
            for p in ad.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
        return ad.double()

    def _check(self, pol, ad, T, n_sink, window, seg, routing=True, chunkings=((1,), (3,), (7,), (8,))):
        q0, k0, v, xn = self._inputs(T)
        rope = Rope(8, 10000.0)
        exp, n_comp = naive_layer(q0[0].numpy(), k0[0].numpy(), v[0].numpy(), xn[0].numpy(), n_sink, window, seg,
                                  ad=ad, routing=routing)
        call = AttnCall(layer=0, q0=q0, k0=k0, v=v, pos=torch.arange(T), rope=rope, x_norm=xn)
        got = pol.attend(call, None)[0].numpy()
        np.testing.assert_allclose(got, exp, rtol=0, atol=1e-10)
        cfg = LlamaConfig(vocab_size=8, dim=32, n_layers=1, n_heads=4, n_kv_heads=2, ffn_dim=8)
        for ch in chunkings:
            st = pol.new_layer_state(cfg, 0, 1, "cpu", torch.float64)
            outs, s = [], 0
            while s < T:
                c = min(ch[0], T - s)
                sl = slice(s, s + c)
                outs.append(pol.attend(AttnCall(0, q0[:, :, sl], k0[:, :, sl], v[:, :, sl], torch.arange(s, s + c),
                                                rope, xn[:, sl]), st))
                s += c
            np.testing.assert_allclose(torch.cat(outs, 2)[0].numpy(), exp, rtol=0, atol=1e-10, err_msg=str(ch))
            self.assertEqual(st.compressions, n_comp)
            self.assertLessEqual(len(st), pol.layout.budget)
        return exp

    def setUp(self):
        torch.set_grad_enabled(False)

    def tearDown(self):
        torch.set_grad_enabled(True)

    def test_streaming(self):
        for n_sink, window, seg in ((4, 16, 8), (0, 8, 4), (3, 6, 3), (2, 0, 5)):
            with self.subTest(n_sink=n_sink, window=window, seg=seg):
                self._check(StreamingPolicy(n_sink, window, seg), None, 50, n_sink, window, seg)

    def test_edgeinfinite(self):
        for rank in (0, 3):
            for n_sink, window, seg in ((4, 16, 8), (0, 8, 4), (3, 6, 3)):
                for routing in (True, False):
                    with self.subTest(rank=rank, n_sink=n_sink, window=window, seg=seg, routing=routing):
                        ad = self._adapter(rank, n_sink, window, seg)
                        pol = EdgeInfinitePolicy(n_sink, window, seg, ad, routing=routing)
                        self._check(pol, ad, 50, n_sink, window, seg, routing=routing)

    def test_naive_detects_wrong_slot(self):
        """Sanity of the transcription itself: rotating the query at p (not at its slot) for the sink keys gives
        different outputs once segments have been evicted."""
        q0, k0, v, xn = self._inputs(40)
        exp, _ = naive_layer(q0[0].numpy(), k0[0].numpy(), v[0].numpy(), xn[0].numpy(), 4, 8, 4)
        pol = StreamingPolicy(4, 8, 4)
        pol.layout.slot_positions = lambda pos: pos   # the bug: no re-indexing
        call = AttnCall(0, q0, k0, v, torch.arange(40), Rope(8, 10000.0), xn)
        bad = pol.attend(call, None)[0].numpy()
        self.assertLess(np.abs(bad[:, :16] - exp[:, :16]).max(), 1e-10)   # before the first eviction: same
        self.assertGreater(np.abs(bad[:, 16:] - exp[:, 16:]).max(), 1e-3)


class TestLayout(unittest.TestCase):
    def test_slots_and_pieces(self):
        lay = SegmentLayout(4, 16, 8)
        self.assertEqual(lay.budget, 28)
        pos = torch.tensor([0, 3, 4, 27, 28, 35, 36, 10 ** 6, 10 ** 6 + 7])
        slots = lay.slot_positions(pos).tolist()
        # p < 28: slot = p; segment j >= 3: slot = n_sink + (p - p_fw), p_fw = 4 + (j - 2) * 8
        self.assertEqual(slots[:4], [0, 3, 4, 27])
        self.assertEqual(slots[4:7], [20, 27, 20])
        for p, c in zip(pos.tolist()[4:], slots[4:]):
            j = (p - 4) // 8
            self.assertEqual(c, 4 + p - (4 + (j - 2) * 8))
            self.assertGreaterEqual(c, 4 + 16)
            self.assertLess(c, lay.budget)
        self.assertEqual(lay.pieces(0, 30), [(0, 4), (4, 12), (12, 20), (20, 28), (28, 30)])
        self.assertEqual(lay.pieces(6, 3), [(0, 3)])
        self.assertEqual(lay.pieces(10, 5), [(0, 2), (2, 5)])
        with self.assertRaises(ValueError):
            SegmentLayout(4, 12, 8)


class TestModelPolicies(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.m, cls.cfg = tiny_model(seed=11)
        cls.ad = random_adapter(cls.cfg, rank=4, seed=3)
        torch.manual_seed(5)
        cls.tok = torch.randint(0, cls.cfg.vocab_size, (2, 75))

    def _policies(self):
        return [StreamingPolicy(4, 16, 8), EdgeInfinitePolicy(4, 16, 8, self.ad),
                EdgeInfinitePolicy(4, 16, 8, self.ad, routing=False), EdgeInfinitePolicy(0, 8, 8, self.ad)]

    def test_incremental_equals_batched(self):
        T = self.tok.shape[1]
        with torch.no_grad():
            for pol in self._policies():
                batched = self.m(self.tok, policy=pol)
                for c in (1, 3, 7, pol.layout.seg, T):
                    with self.subTest(policy=pol.name, routing=getattr(pol, "routing", None), chunk=c):
                        st = self.m.new_state(pol, batch=2)
                        outs = [self.m(self.tok[:, s:s + c], state=st) for s in range(0, T, c)]
                        torch.testing.assert_close(torch.cat(outs, 1), batched, rtol=0, atol=1e-9)
                        lay = pol.layout
                        n_ev = max(0, (T - lay.n_sink - 1) // lay.seg - lay.W)   # segments before the last's j-W
                        self.assertEqual(st.layers[0].evictions, n_ev)
                        self.assertEqual(len(st.layers[1]), T - n_ev * lay.seg)
                        self.assertEqual(st.layers[0].compressions, n_ev if pol.memory else 0)

    def test_equals_full_below_budget(self):
        """Nothing evicted: streaming and edgeinfinite (routing on, non-trivial gate) are full; routing off is not."""
        with torch.no_grad():
            full = self.m(self.tok)
            g = self.ad.gate(0, torch.randn(1, 10, self.cfg.dim, dtype=torch.float64))
            self.assertGreater(float(g.std()), 0.02)  # the gate is token-dependent and not ~0
            for pol in self._policies():
                b = pol.layout.budget
                out = self.m(self.tok, policy=pol)
                if getattr(pol, "routing", True):
                    torch.testing.assert_close(out[:, :b], full[:, :b], rtol=0, atol=1e-9)
                else:
                    self.assertGreater(float((out[:, :b] - full[:, :b]).abs().max()), 1e-2)
                self.assertGreater(float((out[:, b:] - full[:, b:]).abs().max()), 1e-2)

    def test_memory_changes_the_output(self):
        with torch.no_grad():
            s = self.m(self.tok, policy=StreamingPolicy(4, 16, 8))
            e = self.m(self.tok, policy=EdgeInfinitePolicy(4, 16, 8, self.ad))
        b = 4 + 16 + 8
        torch.testing.assert_close(s[:, :b], e[:, :b], rtol=0, atol=1e-12)
        self.assertGreater(float((s[:, b:] - e[:, b:]).abs().max()), 1e-2)

    def test_generate_greedy_with_policy(self):
        pol = EdgeInfinitePolicy(4, 16, 8, self.ad)
        prompt = self.tok[0, :40].tolist()
        out, logits = self.m.generate_greedy(prompt, 10, policy=pol, chunk=6)
        with torch.no_grad():
            ref = self.m(torch.tensor([prompt + out[:-1]]), policy=pol)[0]
        torch.testing.assert_close(logits, ref, rtol=0, atol=1e-9)


class TestTraining(unittest.TestCase):
    def test_gradients_reach_every_adapter_parameter(self):
        m, cfg = tiny_model(seed=2, dtype=torch.float32)
        for p in m.parameters():
            p.requires_grad_(False)
        ad = random_adapter(cfg, rank=2, dtype=torch.float32, std=0.1)
        pol = EdgeInfinitePolicy(4, 16, 8, ad)
        t = torch.randint(0, cfg.vocab_size, (2, 61))
        lg = m(t[:, :-1], policy=pol)
        loss = torch.nn.functional.cross_entropy(lg.reshape(-1, cfg.vocab_size), t[:, 1:].reshape(-1))
        loss.backward()
        for n, p in ad.named_parameters():
            self.assertIsNotNone(p.grad, n)
            self.assertGreater(float(p.grad.abs().sum()), 0, n)
        self.assertTrue(all(p.grad is None for p in m.parameters()))

    def test_memory_fp32_under_bf16_autocast(self):
        m, cfg = tiny_model(seed=2, dtype=torch.float32)
        ad = random_adapter(cfg, rank=2, dtype=torch.float32, std=0.1)
        pol = EdgeInfinitePolicy(4, 16, 8, ad)
        seen = []
        orig = attn_mod.compress

        def spy(M, z, k, v, eps, weight=None):
            seen.append((M.dtype, z.dtype, k.dtype, v.dtype))
            return orig(M, z, k, v, eps, weight)
        attn_mod.compress = spy
        try:
            t = torch.randint(0, cfg.vocab_size, (1, 60))
            with torch.autocast("cpu", dtype=torch.bfloat16):
                lg = m(t, policy=pol)
            lg.float().sum().backward()
        finally:
            attn_mod.compress = orig
        self.assertTrue(seen)
        self.assertTrue(all(d == (torch.float32,) * 4 for d in seen), seen[:2])
        self.assertTrue(torch.isfinite(lg.float()).all())
        self.assertTrue(all(p.grad is not None and torch.isfinite(p.grad).all() for p in ad.parameters()))


class TestAdapterGGUF(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()

    def tearDown(self):
        self.tmp.cleanup()

    def test_round_trip_and_layout(self):
        _, cfg = tiny_model()
        for rank in (0, 3):
            ad = random_adapter(cfg, rank=rank, dtype=torch.float32, n_sink=5, window=24, seg=8)
            ad.eps = 1e-5
            p = os.path.join(self.tmp.name, f"a{rank}.gguf")
            ad.save_gguf(p)
            g = read_gguf(p)
            md = g.metadata
            self.assertEqual(md["general.architecture"], "edgeinf-adapter")
            for key, val in (("edgeinf.adapter.version", 1), ("edgeinf.adapter.n_layer", 2),
                             ("edgeinf.adapter.n_head", 4), ("edgeinf.adapter.n_head_kv", 2),
                             ("edgeinf.adapter.head_dim", 16), ("edgeinf.adapter.dim", 64),
                             ("edgeinf.ei.n_sink", 5), ("edgeinf.ei.window", 24), ("edgeinf.ei.seg", 8),
                             ("edgeinf.ei.rank", rank)):
                self.assertEqual(md[key], val, key)
                self.assertEqual(g.types[key][0], T.UINT32, key)
            self.assertEqual(md["edgeinf.adapter.kind"], "edgeinfinite")
            self.assertEqual(g.types["edgeinf.ei.eps"][0], T.FLOAT32)
            self.assertAlmostEqual(md["edgeinf.ei.eps"], 1e-5, places=12)
            ne = {n: t.ne for n, t in g.tensors.items()}
            self.assertEqual(ne["blk.1.ei_gate.weight"], (64, 4))
            self.assertEqual(ne["blk.1.ei_gate.bias"], (4,))
            if rank:
                self.assertEqual(ne["blk.0.ei_mem_k_a.weight"], (64, 3))
                self.assertEqual(ne["blk.0.ei_mem_k_b.weight"], (3, 32))
                self.assertEqual(ne["blk.0.ei_mem_v_b.weight"], (3, 32))
                self.assertEqual(ne["blk.0.ei_mem_q_b.weight"], (3, 64))
                self.assertEqual(len(g.tensors), 2 * 8)
                # (out, in) row-major: row h of ei_gate.weight is w_{l,h}; B rows are outputs
                np.testing.assert_array_equal(g.tensor("blk.1.ei_mem_q_b.weight"), ad.mq_b[1].detach().numpy())
            else:
                self.assertEqual(len(g.tensors), 2 * 2)
            np.testing.assert_array_equal(g.tensor("blk.1.ei_gate.weight")[2], ad.gate_w[1, 2].detach().numpy())
            ad2 = load_adapter_gguf(p, cfg)
            self.assertEqual((ad2.rank, ad2.n_sink, ad2.window, ad2.seg), (rank, 5, 24, 8))
            self.assertAlmostEqual(ad2.eps, 1e-5, places=12)
            for (n, a), (_, b) in zip(ad.named_parameters(), ad2.named_parameters()):
                torch.testing.assert_close(a, b, rtol=0, atol=0, msg=n)

    def test_refuses_other_model(self):
        _, cfg = tiny_model()
        p = os.path.join(self.tmp.name, "a.gguf")
        random_adapter(cfg, rank=2, dtype=torch.float32).save_gguf(p)
        for kw, key in ((dict(n_layers=3), "n_layer"), (dict(n_kv_heads=4), "n_head_kv"),
                        (dict(dim=128, n_heads=8), "n_head"), (dict(dim=128), "head_dim")):
            _, other = tiny_model(**kw)
            with self.assertRaisesRegex(ValueError, f"another model: edgeinf.adapter.{key}"):
                load_adapter_gguf(p, other)

    def _write(self, edit):
        """An adapter GGUF built by hand with `edit(kv dict, tensors dict)` applied; returns its path."""
        kv = {"general.architecture": ("edgeinf-adapter", T.STRING), "edgeinf.adapter.version": (1, T.UINT32),
              "edgeinf.adapter.kind": ("edgeinfinite", T.STRING), "edgeinf.adapter.n_layer": (1, T.UINT32),
              "edgeinf.adapter.n_head": (2, T.UINT32), "edgeinf.adapter.n_head_kv": (1, T.UINT32),
              "edgeinf.adapter.head_dim": (4, T.UINT32), "edgeinf.adapter.dim": (8, T.UINT32),
              "edgeinf.ei.n_sink": (2, T.UINT32), "edgeinf.ei.window": (8, T.UINT32),
              "edgeinf.ei.seg": (4, T.UINT32), "edgeinf.ei.eps": (1e-6, T.FLOAT32), "edgeinf.ei.rank": (0, T.UINT32)}
        ts = {"blk.0.ei_gate.weight": np.ones((2, 8), np.float32), "blk.0.ei_gate.bias": np.zeros(2, np.float32)}
        edit(kv, ts)
        w = GGUFWriter()
        for k, (v, t) in kv.items():
            w.add(k, v, t)
        for n, a in ts.items():
            w.add_tensor_array(n, a, 0)
        p = os.path.join(self.tmp.name, "h.gguf")
        w.write(p)
        return p

    def test_rejects_bad_files(self):
        self.assertEqual(load_adapter_gguf(self._write(lambda kv, ts: None)).n_params(), 18)
        cases = [
            (lambda kv, ts: kv.update({"general.architecture": ("llama", T.STRING)}), "not an edgeinf adapter"),
            (lambda kv, ts: kv.update({"edgeinf.adapter.version": (2, T.UINT32)}), "version 2"),
            (lambda kv, ts: kv.update({"edgeinf.adapter.kind": ("pod", T.STRING)}), "kind"),
            (lambda kv, ts: kv.update({"edgeinf.ei.window": (6, T.UINT32)}), "multiple of seg"),
            (lambda kv, ts: kv.pop("edgeinf.ei.eps"), "eps"),
            (lambda kv, ts: kv.pop("edgeinf.ei.rank"), "edgeinf.ei.rank"),
            (lambda kv, ts: ts.pop("blk.0.ei_gate.bias"), "blk.0.ei_gate.bias missing"),
            (lambda kv, ts: ts.update({"blk.0.ei_gate.weight": np.ones((2, 4), np.float32)}), "shape"),
            (lambda kv, ts: kv.update({"edgeinf.ei.rank": (2, T.UINT32)}), "ei_mem_k_a.weight missing"),
            (lambda kv, ts: ts.update({"blk.0.ei_mem_k_a.weight": np.ones((2, 8), np.float32)}), "unexpected"),
        ]
        for edit, msg in cases:
            with self.subTest(msg):
                with self.assertRaisesRegex(ValueError, msg):
                    load_adapter_gguf(self._write(edit))

    def test_fresh_adapter_is_near_identity(self):
        """Init: B = 0 (memory inputs are the base projections), gate ~ sigmoid(-6)."""
        _, cfg = tiny_model()
        ad = EdgeInfAdapter.for_model(cfg, rank=4).double()
        x = torch.randn(1, 5, cfg.dim, dtype=torch.float64)
        k0 = torch.randn(1, cfg.n_kv_heads, 5, cfg.head_dim, dtype=torch.float64)
        torch.testing.assert_close(ad.mem_k(1, x, k0), k0, rtol=0, atol=0)
        self.assertLess(float(ad.gate(0, x).max()), 0.003)
        self.assertGreater(float(ad.mk_a.abs().sum()), 0)


# ----------------------------------------------------------------------------------------------------------
ROOT = os.path.dirname(MODELS)
FIX_EI = os.path.join(ROOT, "tests", "fixtures", "tiny-ei")
FIX_TINY = os.path.join(ROOT, "tests", "fixtures", "tiny")


class TestEIFixtures(unittest.TestCase):
    """The committed tiny-ei fixtures agree with the reference and are reproducible from make_tiny_ei.py."""

    @classmethod
    def setUpClass(cls):
        import json
        with open(os.path.join(FIX_EI, "manifest.json"), encoding="utf-8") as f:
            cls.man = json.load(f)

    def test_sizes_and_base_models(self):
        import hashlib
        total = sum(os.path.getsize(os.path.join(FIX_EI, n)) for n in os.listdir(FIX_EI))
        self.assertLess(total, 1000 * 1000)
        for n, b in self.man["base_models"].items():
            with open(os.path.join(FIX_EI, b["path"]), "rb") as f:
                self.assertEqual(hashlib.sha256(f.read()).hexdigest(), b["sha256"], f"{n} changed: regenerate tiny-ei")
        self.assertGreaterEqual(len(self.man["layout"]["evictions_at"]), 4)

    def test_logits_match_reference(self):
        from edgeinf_ref.export import load_gguf
        sys.path.insert(0, os.path.join(MODELS, "tools"))
        from make_tiny import add_act_q8
        lay = self.man["layout"]
        seq = torch.tensor([self.man["sequence"]])
        for run, e in self.man["runs"].items():
            with self.subTest(run):
                m, cfg, _ = load_gguf(os.path.join(FIX_EI, e["gguf"]), dtype=torch.float64)
                if e["actq8"]:
                    add_act_q8(m)
                pol = None
                if e["policy"] == "streaming":
                    pol = StreamingPolicy(lay["n_sink"], lay["window"], lay["seg"])
                elif e["policy"] == "edgeinfinite":
                    ad = load_adapter_gguf(os.path.join(FIX_EI, e["adapter"]), cfg).double()
                    self.assertEqual((ad.n_sink, ad.window, ad.seg), (lay["n_sink"], lay["window"], lay["seg"]))
                    pol = EdgeInfinitePolicy(ad.n_sink, ad.window, ad.seg, ad)
                with torch.no_grad():
                    ref = m(seq, policy=pol)[0].numpy()
                lg = np.fromfile(os.path.join(FIX_EI, e["logits_file"]), dtype="<f4").reshape(e["logits_shape"])
                np.testing.assert_allclose(lg, ref, rtol=0, atol=1e-5)
                self.assertEqual(lg.shape, (self.man["n_rows"], self.man["vocab"]))

    def test_expect_txt_matches_manifest(self):
        for run, e in self.man["runs"].items():
            kv = {}
            with open(os.path.join(FIX_EI, run + ".expect.txt"), encoding="utf-8") as f:
                for line in f:
                    if line.startswith("#") or not line.strip():
                        continue
                    k, *v = line.split()
                    kv[k] = v
            self.assertEqual(kv["gguf"], [e["gguf"]])
            self.assertEqual(kv["policy"], [e["policy"]])
            self.assertEqual([int(x) for x in kv["sequence"]], self.man["sequence"])
            self.assertEqual([int(x) for x in kv["greedy"]], e["greedy"])
            self.assertEqual(kv["logits"], [e["logits_file"]])
            self.assertEqual(int(kv["n_rows"][0]), e["logits_shape"][0])
            self.assertEqual(int(kv["compressions"][0]), e["stats_after_sequence"]["compressions"])
            self.assertEqual(int(kv["window"][0]), self.man["layout"]["window"])

    def test_regeneration_is_byte_identical(self):
        import contextlib
        import hashlib
        import io
        sys.path.insert(0, os.path.join(MODELS, "tools"))
        import make_tiny_ei
        with tempfile.TemporaryDirectory() as td:
            with contextlib.redirect_stdout(io.StringIO()):
                make_tiny_ei.main(td, FIX_TINY)
            self.assertEqual(sorted(os.listdir(FIX_EI)), sorted(os.listdir(td)))
            for n in sorted(os.listdir(FIX_EI)):
                with open(os.path.join(FIX_EI, n), "rb") as a, open(os.path.join(td, n), "rb") as b:
                    self.assertEqual(hashlib.sha256(a.read()).hexdigest(), hashlib.sha256(b.read()).hexdigest(), n)


class TestTrainingHelpers(unittest.TestCase):
    def test_tokenizer_from_gguf(self):
        import sentencepiece as spm
        from edgeinf_ref.spm_proto import processor_from_gguf
        a = processor_from_gguf(read_gguf(os.path.join(FIX_TINY, "tiny-f32.gguf")))
        b = spm.SentencePieceProcessor(model_file=os.path.join(FIX_TINY, "tokenizer.model"))
        with open(os.path.join(FIX_TINY, "corpus.txt"), encoding="utf-8") as f:
            text = f.read() + "  two  spaces, digits 12345, unicode café 🙂 and 日本"
        self.assertEqual(a.encode(text), b.encode(text))
        self.assertEqual((a.bos_id(), a.eos_id(), a.unk_id()), (b.bos_id(), b.eos_id(), b.unk_id()))

    def test_passkey_rows_and_key_location(self):
        import sentencepiece as spm
        sys.path.insert(0, MODELS)
        import random
        import train_adapter as ta
        sp = spm.SentencePieceProcessor(model_file=os.path.join(FIX_TINY, "tokenizer.model"))
        pk = ta.Passkey(sp)
        rng = random.Random(0)
        for depth in (0.0, 0.5, 1.0):
            ids, ans, (ks, ke), d = pk.row(rng, 300, depth)
            text = sp.decode(ids + ans)
            key = sp.decode(ans).strip()
            self.assertRegex(key, r"^[0-9]{5}$")
            self.assertTrue(text.endswith("What is the pass key? The pass key is " + key), text[-60:])
            self.assertIn(f"The pass key is {key}. Remember it.", sp.decode(ids[ks:ke]))
            self.assertLess(abs(len(ids) - 300), 40)
            self.assertAlmostEqual(d, depth, delta=0.1)
        lay = SegmentLayout(4, 16, 8)   # answer at 50: segment 5, cache = sinks + positions >= 28
        self.assertEqual(ta.key_location(lay, (10, 20), 50), "memory")
        self.assertEqual(ta.key_location(lay, (30, 40), 50), "window")
        self.assertEqual(ta.key_location(lay, (20, 30), 50), "split")
        self.assertEqual(ta.key_location(lay, (0, 3), 50), "window")
        self.assertEqual(ta.key_location(lay, (10, 20), 27), "window")


if __name__ == "__main__":
    unittest.main()
