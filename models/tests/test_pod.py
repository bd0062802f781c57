"""Tests of the PoD policy (docs/pod.md), its adapter GGUF and the calibration helpers.

The policy is checked against `naive_pod`, an independent per-query transcription of the contract (numpy, complex
RoPE, explicit proximal/distant sets, the anchor's logits/keys looked up per token), then at model level: one block per
layer == full exactly, no distant token == full exactly, incremental == batched for several chunkings, the KV bytes held
== the contract's formula, and with identical key inputs share=keys == full.
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

from edgeinf_ref.adapter import EdgeInfAdapter  # noqa: E402
from edgeinf_ref.attention import AttnCall, EdgeInfinitePolicy, FullPolicy, Rope  # noqa: E402
from edgeinf_ref.gguf import GGUFWriter, T, read_gguf  # noqa: E402
from edgeinf_ref.llama import Llama, LlamaConfig  # noqa: E402
from edgeinf_ref.pod import (EdgeInfinitePodPolicy, PodConfig, PodPolicy, blocks_from_starts,  # noqa: E402
                             kv_bytes_held, kv_saving, load_pod_gguf, starts_from_blocks)

import pod_calibrate  # noqa: E402

torch.set_num_threads(1)


def tiny_model(n_layers=4, seed=0, dtype=torch.float64):
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=96, dim=64, n_layers=n_layers, n_heads=4, n_kv_heads=2, ffn_dim=96, max_seq_len=128)
    m = Llama(cfg)
    with torch.no_grad():
        for _, p in m.named_parameters():
            if p.dim() == 1:
                p.uniform_(0.5, 1.5)
            else:
                p.normal_(0, 1.0 / math.sqrt(p.shape[1]))
    return m.to(dtype).eval(), cfg


# ----------------------------------------------------------------------------------------------------------
# Independent transcription of the contract, one query at a time
# ----------------------------------------------------------------------------------------------------------

def _rot(x, p, theta=10000.0):
    """RoPE (adjacent pairs) of vector x (D,) at position p, via complex numbers."""
    D = x.shape[0]
    c = (x[0::2] + 1j * x[1::2]) * np.exp(1j * p * theta ** (-2.0 * np.arange(D // 2) / D))
    out = np.empty(D)
    out[0::2], out[1::2] = c.real, c.imag
    return out


def naive_pod(layers, blocks, n_sink, n_recent, share):
    """layers: per layer (q0 (H,T,D), k0 (Hkv,T,D), v (Hkv,T,D)) numpy float64 -> per layer output (H,T,D), following
    docs/pod.md literally: proximal t (t < n_sink or p - n_recent < t <= p) -> own logit; distant t (n_sink <= t <=
    p - n_recent) -> the anchor's logit (scores) or own query . anchor key (keys); one softmax; own values."""
    anchor = {l: b[0] for b in blocks for l in b}
    outs = []
    for l, (q0, k0, v) in enumerate(layers):
        H, T, D = q0.shape
        Hkv = k0.shape[0]
        a = anchor[l]
        qa, ka = layers[a][0], layers[a][1]
        out = np.zeros((H, T, D))
        for p in range(T):
            for h in range(H):
                g = h // (H // Hkv)
                sc = []
                for t in range(p + 1):
                    if t < n_sink or t > p - n_recent:
                        s = _rot(q0[h, p], p) @ _rot(k0[g, t], t)
                    elif share == "scores":
                        s = _rot(qa[h, p], p) @ _rot(ka[g, t], t)
                    else:
                        s = _rot(q0[h, p], p) @ _rot(ka[g, t], t)
                    sc.append(s / math.sqrt(D))
                w = np.exp(np.array(sc) - max(sc))
                out[h, p] = (w / w.sum()) @ v[g, :p + 1]
        outs.append(out)
    return outs


def _sig(x):
    return np.where(x > 0, x + 1.0, np.exp(x))   # ELU(x) + 1


def naive_eipod(layers, blocks, n_sink, window, seg, n_recent, share, ad, routing=True, mem_keys="anchor"):
    """layers: per layer (q0 (H,T,D), k0 (Hkv,T,D), v (Hkv,T,D), xn (T,dim)) numpy float64 -> per layer output
    (H,T,D) of edgeinfinite+pod following docs/pod.md literally: edgeinfinite.md's cache, positions, memory and gate;
    inside the cache pod's proximal/distant rule; non-anchor layers compress with the anchor's k0 + own low-rank term.
    Also returns the compressions per layer. mem_keys="own" (not the contract) builds memory keys from the layer's own
    k0, to show the tests can tell."""
    anchor = {l: b[0] for b in blocks for l in b}
    W = window // seg
    outs, comps = [], []
    for l, (q0, k0, v, xn) in enumerate(layers):
        H, T, D = q0.shape
        Hkv = k0.shape[0]
        a = anchor[l]
        qa, ka = layers[a][0], layers[a][1]
        P = {n: prm.detach().double().numpy()[l] for n, prm in ad.named_parameters()}

        def lowrank(an, bn, x):
            return P[bn] @ (P[an] @ x) if ad.rank else 0.0
        kb = ka if mem_keys == "anchor" else k0
        kmem = np.stack([kb[:, t].reshape(-1) + lowrank("mk_a", "mk_b", xn[t]) for t in range(T)]).reshape(T, Hkv, D)
        vmem = np.stack([v[:, t].reshape(-1) + lowrank("mv_a", "mv_b", xn[t]) for t in range(T)]).reshape(T, Hkv, D)
        qmem = np.stack([q0[:, t].reshape(-1) + lowrank("mq_a", "mq_b", xn[t]) for t in range(T)]).reshape(T, H, D)
        M, z = np.zeros((Hkv, D, D)), np.zeros((Hkv, D))
        out = np.zeros((H, T, D))
        n_comp = 0
        for p in range(T):
            if p >= n_sink and (p - n_sink) % seg == 0 and (p - n_sink) // seg - W - 1 >= 0:
                e = (p - n_sink) // seg - W - 1
                S = list(range(n_sink + e * seg, n_sink + (e + 1) * seg))
                for g in range(Hkv):
                    sK = _sig(np.stack([kmem[t, g] for t in S]))
                    Vret = (sK @ M[g]) / (sK @ z[g] + ad.eps)[:, None]
                    M[g] = M[g] + sK.T @ (np.stack([vmem[t, g] for t in S]) - Vret)
                    z[g] = z[g] + sK.sum(0)
                n_comp += 1
            if p < n_sink:
                cached, c = list(range(p + 1)), p
            else:
                j = (p - n_sink) // seg
                p_fw = n_sink + max(0, j - W) * seg
                cached, c = list(range(n_sink)) + list(range(p_fw, p + 1)), n_sink + (p - p_fw)
            for h in range(H):
                g = h // (H // Hkv)
                sc = []
                for t in cached:
                    if t < n_sink:
                        qp = c if p >= n_sink else p
                        s_ = _rot(q0[h, p], qp) @ _rot(k0[g, t], t)
                    elif t > p - n_recent:
                        s_ = _rot(q0[h, p], p) @ _rot(k0[g, t], t)
                    elif share == "scores":
                        s_ = _rot(qa[h, p], p) @ _rot(ka[g, t], t)
                    else:
                        s_ = _rot(q0[h, p], p) @ _rot(ka[g, t], t)
                    sc.append(s_ / math.sqrt(D))
                w = np.exp(np.array(sc) - max(sc))
                local = (w / w.sum()) @ v[g, cached]
                if routing and n_comp == 0:
                    out[h, p] = local
                    continue
                sq = _sig(qmem[p, h])
                amem = (sq @ M[g]) / (sq @ z[g] + ad.eps)
                gate = 1.0 / (1.0 + np.exp(-(P["gate_w"][h] @ xn[p] + P["gate_b"][h])))
                out[h, p] = gate * amem + (1 - gate) * local
        outs.append(out)
        comps.append(n_comp)
    return outs, comps


def random_layers(n_layers, T, seed=0, H=4, Hkv=2, D=8):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(1, H, T, D, generator=g, dtype=torch.float64),
             torch.randn(1, Hkv, T, D, generator=g, dtype=torch.float64),
             torch.randn(1, Hkv, T, D, generator=g, dtype=torch.float64)) for _ in range(n_layers)]


def run_layers(pol, layers, chunk=None, n_heads=4, n_kv=2, D=8, xns=None):
    """Feed the per-layer inputs through pol: batched (chunk None) or incremental in chunks (all layers of a chunk
    in order, like the model). xns: per-layer normed inputs (B,T,dim) (zeros if None). Returns (per layer output
    (H,T,D) numpy, layer states or None)."""
    rope = Rope(D, 10000.0)
    T_ = layers[0][0].shape[2]
    xns = xns or [torch.zeros(1, T_, 1, dtype=torch.float64)] * len(layers)
    if chunk is None:
        return [pol.attend(AttnCall(l, q0, k0, v, torch.arange(T_), rope, xns[l]), None)[0].numpy()
                for l, (q0, k0, v) in enumerate(layers)], None
    cfg = LlamaConfig(vocab_size=8, dim=n_heads * D, n_layers=len(layers), n_heads=n_heads, n_kv_heads=n_kv, ffn_dim=8)
    states = [pol.new_layer_state(cfg, l, 1, "cpu", torch.float64) for l in range(len(layers))]
    outs = [[] for _ in layers]
    for s in range(0, T_, chunk):
        sl = slice(s, min(T_, s + chunk))
        pos = torch.arange(sl.start, sl.stop)
        for l, (q0, k0, v) in enumerate(layers):
            outs[l].append(pol.attend(AttnCall(l, q0[:, :, sl], k0[:, :, sl], v[:, :, sl], pos, rope,
                                               xns[l][:, sl]), states[l]))
    return [torch.cat(o, 2)[0].numpy() for o in outs], states


def incremental(m, t, pol, chunk):
    """Logits (T, V) of tokens t (1, T) fed to model m in chunks of `chunk` through a fresh state; and the state."""
    st = m.new_state(pol, 1)
    return torch.cat([m(t[:, s:s + chunk], state=st)[0] for s in range(0, t.shape[1], chunk)], 0), st


class TestPodVsNaive(unittest.TestCase):
    """Attention level, random inputs per layer: batched and incremental paths equal the literal transcription."""

    def setUp(self):
        torch.set_grad_enabled(False)

    def tearDown(self):
        torch.set_grad_enabled(True)

    def _check(self, blocks, n_sink, n_recent, share, T_=30, chunks=(1, 3, 8)):
        layers = random_layers(sum(len(b) for b in blocks), T_, seed=len(blocks) + n_sink + n_recent)
        exp = naive_pod([tuple(x[0].numpy() for x in lay) for lay in layers], blocks, n_sink, n_recent, share)
        pol = PodPolicy(blocks, n_sink, n_recent, share)
        got, _ = run_layers(pol, layers)
        for l in range(len(layers)):
            np.testing.assert_allclose(got[l], exp[l], rtol=0, atol=1e-10, err_msg=f"batched layer {l}")
        for ch in chunks:
            got, states = run_layers(pol, layers, ch)
            for l in range(len(layers)):
                np.testing.assert_allclose(got[l], exp[l], rtol=0, atol=1e-10, err_msg=f"chunk {ch} layer {l}")
            for st in states:   # non-anchor layers really dropped their distant keys
                want = T_ if st.is_anchor else min(T_, n_sink + n_recent - 1)
                self.assertEqual(st.n_keys, want)
                self.assertEqual(len(st), T_)
        return exp

    def test_policies(self):
        for blocks in ([[0, 1, 2]], [[0], [1, 2]], [[0, 1], [2]]):
            for share in ("scores", "keys"):
                for n_sink, n_recent in ((4, 6), (0, 5), (2, 1), (3, 40)):
                    with self.subTest(blocks=blocks, share=share, n_sink=n_sink, n_recent=n_recent):
                        self._check(blocks, n_sink, n_recent, share)

    def test_naive_detects_off_by_one(self):
        """The transcription is sharp: one more recent token, or the other sharing mode, gives other outputs."""
        blocks = [[0, 1]]
        layers = random_layers(2, 24, seed=3)
        npl = [tuple(x[0].numpy() for x in lay) for lay in layers]
        exp = naive_pod(npl, blocks, 2, 5, "scores")
        for pol in (PodPolicy(blocks, 2, 6, "scores"), PodPolicy(blocks, 3, 5, "scores"),
                    PodPolicy(blocks, 2, 5, "keys")):
            got, _ = run_layers(pol, layers)
            self.assertGreater(np.abs(got[1] - exp[1]).max(), 1e-3, pol.describe())
            np.testing.assert_allclose(got[0], exp[0], rtol=0, atol=1e-10)   # the anchor attends like full

    def test_identical_keys_make_share_keys_exact(self):
        """share=keys with the anchor's keys equal to the layer's own (same key input) is exactly full attention;
        share=scores needs the queries equal too."""
        T_ = 40
        base = random_layers(3, T_, seed=5)
        same_k = [(q0, base[0][1], v) for q0, _, v in base]
        full = naive_pod([tuple(x[0].numpy() for x in lay) for lay in same_k], [[0], [1], [2]], 4, 6, "keys")
        got, _ = run_layers(PodPolicy([[0, 1, 2]], 4, 6, "keys"), same_k, 5)
        for l in range(3):
            np.testing.assert_allclose(got[l], full[l], rtol=0, atol=1e-12)
        got, _ = run_layers(PodPolicy([[0, 1, 2]], 4, 6, "scores"), same_k, 5)
        self.assertGreater(np.abs(got[1] - full[1]).max(), 1e-3)
        same_qk = [(base[0][0], base[0][1], v) for _, _, v in base]
        full = naive_pod([tuple(x[0].numpy() for x in lay) for lay in same_qk], [[0], [1], [2]], 4, 6, "scores")
        got, _ = run_layers(PodPolicy([[0, 1, 2]], 4, 6, "scores"), same_qk, 5)
        for l in range(3):
            np.testing.assert_allclose(got[l], full[l], rtol=0, atol=1e-12)


class TestPodModel(unittest.TestCase):
    """Model level (4-layer random float64 Llama)."""

    @classmethod
    def setUpClass(cls):
        cls.m, cls.cfg = tiny_model()
        g = torch.Generator().manual_seed(1)
        cls.tokens = torch.randint(0, cls.cfg.vocab_size, (1, 70), generator=g)

    def setUp(self):
        torch.set_grad_enabled(False)

    def tearDown(self):
        torch.set_grad_enabled(True)

    def _incremental(self, pol, chunk, tokens=None):
        return incremental(self.m, self.tokens if tokens is None else tokens, pol, chunk)

    def test_one_block_per_layer_is_full_exactly(self):
        full_b = self.m(self.tokens)[0]
        for share in ("scores", "keys"):
            pol = PodPolicy([[0], [1], [2], [3]], 4, 8, share)
            self.assertTrue(torch.equal(self.m(self.tokens, policy=pol)[0], full_b), share)
            for chunk in (1, 9):
                inc, st = self._incremental(pol, chunk)
                ref, _ = self._incremental(FullPolicy(), chunk)
                self.assertTrue(torch.equal(inc, ref), (share, chunk))
                self.assertEqual([s.n_keys for s in st.layers], [70] * 4)

    def test_no_distant_tokens_is_full_exactly(self):
        t = self.tokens[:, :20]
        full_b = self.m(t)[0]
        for share in ("scores", "keys"):
            for n_sink, n_recent in ((4, 16), (0, 20), (19, 1)):
                pol = PodPolicy([[0, 1, 2, 3]], n_sink, n_recent, share)
                self.assertTrue(torch.equal(self.m(t, policy=pol)[0], full_b))
                for chunk in (1, 6):
                    inc, _ = self._incremental(pol, chunk, t)
                    ref, _ = self._incremental(FullPolicy(), chunk, t)
                    self.assertTrue(torch.equal(inc, ref), (share, n_sink, n_recent, chunk))
            # one more token is distant for the last query: no longer full
            pol = PodPolicy([[0, 1, 2, 3]], 4, 15, share)
            self.assertGreater(float((self.m(t, policy=pol)[0] - full_b).abs().max()), 1e-6)

    def test_incremental_equals_batched(self):
        for blocks in ([[0, 1], [2, 3]], [[0], [1, 2, 3]], [[0, 1, 2, 3]]):
            for share in ("scores", "keys"):
                pol = PodPolicy(blocks, 4, 8, share)
                b = self.m(self.tokens, policy=pol)[0]
                self.assertGreater(float((b - self.m(self.tokens)[0]).abs().max()), 1e-3)   # pod is not full here
                for chunk in (1, 5, 16, 70):
                    inc, _ = self._incremental(pol, chunk)
                    self.assertLess(float((inc - b).abs().max()), 1e-11, (blocks, share, chunk))

    def test_identical_layer_weights_model(self):
        """Model level: layers 0-2 share their attention weights and norms, and layers 0-1 write nothing into the
        residual stream (attn_output = ffn_down = 0), so every layer sees the same input and computes the same q, k:
        pod in one block is then exactly full for both share modes; a different attn_k in layer 2 breaks share=keys."""
        m, cfg = tiny_model(n_layers=3, seed=4)
        with torch.no_grad():
            src = m.layers[0]
            for l in (1, 2):
                for name in ("attention_norm.weight", "attention.wq.weight", "attention.wk.weight",
                             "attention.wv.weight"):
                    dict(m.layers[l].named_parameters())[name].copy_(dict(src.named_parameters())[name])
            for l in (0, 1):
                m.layers[l].attention.wo.weight.zero_()
                m.layers[l].feed_forward.w2.weight.zero_()
            t = self.tokens[:, :50]
            full = m(t)[0]
            for share in ("scores", "keys"):
                pol = PodPolicy([[0, 1, 2]], 2, 6, share)
                self.assertLess(float((m(t, policy=pol)[0] - full).abs().max()), 1e-12, share)
                inc, _ = incremental(m, t, pol, 7)
                self.assertLess(float((inc - full).abs().max()), 1e-12, share)
            m.layers[2].attention.wk.weight.mul_(1.5)
            full = m(t)[0]
            for share in ("scores", "keys"):
                self.assertGreater(float((m(t, policy=PodPolicy([[0, 1, 2]], 2, 6, share))[0] - full).abs().max()),
                                   1e-4, share)

    def test_float32_batched_close_to_float64(self):
        m32 = self.m.float()
        try:
            pol = PodPolicy([[0, 1], [2, 3]], 4, 8, "keys")
            a = m32(self.tokens, policy=pol)[0].double()
            b = self.m.double()(self.tokens, policy=pol)[0]
            self.assertLess(float((a - b).abs().max()), 1e-3)
        finally:
            self.m.double()

    def test_kv_bytes_formula(self):
        cfg = self.cfg
        kv_dim = cfg.n_kv_heads * cfg.head_dim
        for blocks in ([[0, 1], [2, 3]], [[0, 1, 2, 3]], [[0], [1], [2], [3]]):
            pol = PodPolicy(blocks, 4, 8, "scores")
            st = self.m.new_state(pol, 1)
            for n_new in (1, 7, 3, 30, 29):
                self.m(self.tokens[:, st.pos:st.pos + n_new], state=st)
                n = st.pos
                held = sum(s.nbytes() for s in st.layers)
                self.assertEqual(held, kv_bytes_held(n, 4, len(blocks), kv_dim, 4, 8, elem=8), (blocks, n))
        self.assertAlmostEqual(kv_saving(10 ** 9, 6, 1, 16, 128), 5 / 12, places=6)
        self.assertEqual(kv_saving(100, 6, 6, 16, 128), 0.0)

    def test_state_errors(self):
        pol = PodPolicy([[0, 1], [2, 3]], 4, 8)
        st = self.m.new_state(pol, 1)
        self.m(self.tokens[:, :5], state=st)
        with self.assertRaises(ValueError):   # a gap in positions
            st.layers[0].next_pos = 9
            self.m(self.tokens[:, :2], state=st)
        with self.assertRaises(ValueError):   # states created out of order
            pol.new_layer_state(self.cfg, 2, 1, "cpu", torch.float64)
        m6, _ = tiny_model(n_layers=6)
        with self.assertRaises(ValueError):   # blocks for 4 layers, model of 6
            m6.new_state(pol, 1)

    def test_bad_blocks(self):
        for blocks in ([], [[0, 2]], [[1, 2]], [[0], []], [[1], [0]], [[0, 1], [1, 2]]):
            with self.assertRaises(ValueError, msg=str(blocks)):
                PodPolicy(blocks, 4, 8)
        with self.assertRaises(ValueError):
            PodPolicy([[0]], 4, 0)
        with self.assertRaises(ValueError):
            PodPolicy([[0]], -1, 4)
        with self.assertRaises(ValueError):
            PodPolicy([[0]], 4, 4, "values")
        self.assertEqual(blocks_from_starts([0, 2, 3], 6), [[0, 1], [2], [3, 4, 5]])
        self.assertEqual(starts_from_blocks([[0, 1], [2], [3, 4, 5]], 6), [0, 2, 3])
        for starts in ([], [1], [0, 0], [0, 3, 2], [0, 6]):
            with self.assertRaises(ValueError, msg=str(starts)):
                blocks_from_starts(starts, 6)
        with self.assertRaises(ValueError):
            starts_from_blocks([[0, 1]], 3)


def random_adapter(cfg_or_dims, rank=3, n_sink=4, window=16, seg=8, seed=7, std=0.3):
    """An EdgeInfAdapter with every parameter random (gates around 0.5, non-zero low-rank terms), float64."""
    ad = (EdgeInfAdapter.for_model(cfg_or_dims, rank=rank, n_sink=n_sink, window=window, seg=seg)
          if isinstance(cfg_or_dims, LlamaConfig) else
          EdgeInfAdapter(*cfg_or_dims, rank=rank, n_sink=n_sink, window=window, seg=seg))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for prm in ad.parameters():
            prm.copy_(torch.randn(prm.shape, generator=g) * std)
    return ad.double()


class TestEdgeInfinitePodVsNaive(unittest.TestCase):
    """Attention level: edgeinfinite+pod (batched and incremental) equals the literal transcription."""

    def setUp(self):
        torch.set_grad_enabled(False)

    def tearDown(self):
        torch.set_grad_enabled(True)

    def test_policies(self):
        T_, dim = 60, 16
        for blocks in ([[0, 1, 2]], [[0], [1, 2]]):
            for share in ("scores", "keys"):
                for n_sink, window, seg, n_recent, rank, routing in ((4, 16, 8, 8, 3, True), (0, 8, 4, 8, 0, True),
                                                                     (3, 6, 3, 1, 2, False), (2, 12, 4, 5, 3, True)):
                    with self.subTest(blocks=blocks, share=share, layout=(n_sink, window, seg, n_recent),
                                      rank=rank, routing=routing):
                        layers = random_layers(3, T_, seed=n_sink + window)
                        g = torch.Generator().manual_seed(11)
                        xns = [torch.randn(1, T_, dim, generator=g, dtype=torch.float64) for _ in range(3)]
                        ad = random_adapter((3, 4, 2, 8, dim), rank=rank, n_sink=n_sink, window=window, seg=seg)
                        exp, comps = naive_eipod([tuple(x[0].numpy() for x in lay) + (xn[0].numpy(),)
                                                  for lay, xn in zip(layers, xns)], blocks, n_sink, window, seg,
                                                 n_recent, share, ad, routing)
                        self.assertGreater(comps[0], 3)
                        pol = EdgeInfinitePodPolicy(blocks, n_sink, window, seg, n_recent, share, ad, routing=routing)
                        got, _ = run_layers(pol, layers, xns=xns)
                        for l in range(3):
                            np.testing.assert_allclose(got[l], exp[l], rtol=0, atol=1e-10, err_msg=f"batched {l}")
                        for ch in (1, 5, 9):
                            got, states = run_layers(pol, layers, ch, xns=xns)
                            for l in range(3):
                                np.testing.assert_allclose(got[l], exp[l], rtol=0, atol=1e-10,
                                                           err_msg=f"chunk {ch} layer {l}")
                            for st in states:
                                self.assertEqual(st.compressions, comps[0])
                                self.assertLessEqual(len(st), n_sink + window + seg)
                                if not st.is_anchor:
                                    self.assertEqual(st.n_keys, min(len(st), n_sink + n_recent - 1))

    def test_naive_memory_keys_are_the_anchors(self):
        """The transcription is sharp about memory keys: building them from the layer's own k0 gives other outputs."""
        T_, dim = 60, 16
        layers = random_layers(2, T_, seed=4)
        g = torch.Generator().manual_seed(11)
        xns = [torch.randn(1, T_, dim, generator=g, dtype=torch.float64) for _ in range(2)]
        ad = random_adapter((2, 4, 2, 8, dim), rank=2)
        got, _ = run_layers(EdgeInfinitePodPolicy([[0, 1]], 4, 16, 8, 8, "keys", ad), layers, xns=xns)
        np_layers = [tuple(x[0].numpy() for x in lay) + (xn[0].numpy(),) for lay, xn in zip(layers, xns)]
        exp = naive_eipod(np_layers, [[0, 1]], 4, 16, 8, 8, "keys", ad)[0][1]
        own = naive_eipod(np_layers, [[0, 1]], 4, 16, 8, 8, "keys", ad, mem_keys="own")[0][1]
        np.testing.assert_allclose(got[1], exp, rtol=0, atol=1e-10)
        self.assertGreater(np.abs(got[1] - own).max(), 1e-3)


class TestEdgeInfinitePodModel(unittest.TestCase):
    """Model level (3-layer random float64 Llama, random rank-3 adapter, n_sink 4 / window 16 / seg 8)."""

    @classmethod
    def setUpClass(cls):
        cls.m, cls.cfg = tiny_model(n_layers=3)
        cls.ad = random_adapter(cls.cfg)
        cls.tokens = torch.randint(0, cls.cfg.vocab_size, (1, 90), generator=torch.Generator().manual_seed(2))

    def setUp(self):
        torch.set_grad_enabled(False)

    def tearDown(self):
        torch.set_grad_enabled(True)

    def _incremental(self, pol, chunk):
        st = self.m.new_state(pol, 1)
        t = self.tokens
        return torch.cat([self.m(t[:, s:s + chunk], state=st)[0] for s in range(0, t.shape[1], chunk)], 0), st

    def test_one_block_per_layer_is_edgeinfinite(self):
        for routing in (True, False):
            ei = EdgeInfinitePolicy(4, 16, 8, self.ad, routing=routing)
            for share in ("scores", "keys"):
                pol = EdgeInfinitePodPolicy([[0], [1], [2]], 4, 16, 8, 8, share, self.ad, routing=routing)
                self.assertLess(float((self.m(self.tokens, policy=pol) - self.m(self.tokens, policy=ei)).abs().max()),
                                1e-12)
                for chunk in (1, 7):
                    a, _ = self._incremental(pol, chunk)
                    b, _ = self._incremental(ei, chunk)
                    self.assertLess(float((a - b).abs().max()), 1e-12, (routing, share, chunk))

    def test_pod_until_first_eviction(self):
        budget = 4 + 16 + 8
        for share in ("scores", "keys"):
            pol = EdgeInfinitePodPolicy([[0, 1, 2]], 4, 16, 8, 8, share, self.ad)
            got = self.m(self.tokens, policy=pol)[0]
            pod = self.m(self.tokens, policy=PodPolicy([[0, 1, 2]], 4, 8, share))[0]
            self.assertLess(float((got[:budget] - pod[:budget]).abs().max()), 1e-12)
            self.assertGreater(float((got[budget:] - pod[budget:]).abs().max()), 1e-3)

    def test_incremental_equals_batched_and_kv_bytes(self):
        kv_dim = self.cfg.n_kv_heads * self.cfg.head_dim
        for blocks in ([[0, 1, 2]], [[0, 1], [2]]):
            for share in ("scores", "keys"):
                pol = EdgeInfinitePodPolicy(blocks, 4, 16, 8, 8, share, self.ad)
                b = self.m(self.tokens, policy=pol)[0]
                for chunk in (1, 6, 13):
                    inc, st = self._incremental(pol, chunk)
                    self.assertLess(float((inc - b).abs().max()), 1e-11, (blocks, share, chunk))
                    h = len(st.layers[0])
                    self.assertEqual(sum(s.nbytes() for s in st.layers),
                                     kv_bytes_held(h, 3, len(blocks), kv_dim, 4, 8, elem=8))
                    self.assertEqual(h, 4 + 16 + 6)   # sinks, 2 whole segments, 6 tokens of the current one

    def test_refusals(self):
        with self.assertRaises(ValueError):
            EdgeInfinitePodPolicy([[0, 1, 2]], 4, 16, 8, 17, "keys", self.ad)   # n_recent > window
        with self.assertRaises(ValueError):
            EdgeInfinitePodPolicy([[0, 1, 2]], 4, 16, 8, 8, "keys", None)
        with self.assertRaises(ValueError):
            EdgeInfinitePodPolicy([[0, 2]], 4, 16, 8, 8, "keys", self.ad)


class TestPodAdapter(unittest.TestCase):
    def setUp(self):
        self.cfg = LlamaConfig(vocab_size=96, dim=64, n_layers=4, n_heads=4, n_kv_heads=2, ffn_dim=96)
        self.dir = tempfile.TemporaryDirectory()

    def tearDown(self):
        self.dir.cleanup()

    def path(self, name):
        return os.path.join(self.dir.name, name)

    def test_roundtrip_pod(self):
        sim = np.arange(16, dtype=np.float32).reshape(4, 4) / 16
        pc = PodConfig.for_model(self.cfg, [0, 1, 3], 4, 16, "keys", 0.75, sim)
        pc.save_gguf(self.path("a.gguf"))
        g = read_gguf(self.path("a.gguf"))
        self.assertEqual(g.get("edgeinf.adapter.kind"), "pod")
        self.assertEqual(g.types["edgeinf.pod.block_starts"], (T.ARRAY, T.UINT32))
        self.assertEqual(len(g.tensors), 0)
        back, ei = load_pod_gguf(self.path("a.gguf"), self.cfg)
        self.assertIsNone(ei)
        self.assertEqual((back.block_starts, back.n_sink, back.n_recent, back.share), ([0, 1, 3], 4, 16, "keys"))
        self.assertAlmostEqual(back.delta, 0.75, places=6)
        np.testing.assert_array_equal(back.similarity, sim)
        self.assertEqual(back.blocks, [[0], [1, 2], [3]])
        self.assertEqual(back.policy().describe(), "pod share=keys n_sink=4 n_recent=16 blocks=0,1-2,3")

    def test_roundtrip_edgeinfinite_pod(self):
        ad = EdgeInfAdapter.for_model(self.cfg, rank=2, n_sink=4, window=16, seg=8)
        with torch.no_grad():
            ad.gate_b.normal_()
        pc = PodConfig.for_model(self.cfg, [0, 2], 4, 8, "scores", 0.9)
        pc.save_gguf(self.path("b.gguf"), ei_adapter=ad)
        g = read_gguf(self.path("b.gguf"))
        self.assertEqual(g.get("edgeinf.adapter.kind"), "edgeinfinite+pod")
        back, ei = load_pod_gguf(self.path("b.gguf"), self.cfg)
        self.assertEqual(back.block_starts, [0, 2])
        self.assertEqual((ei.n_sink, ei.window, ei.seg, ei.rank), (4, 16, 8, 2))
        self.assertTrue(torch.equal(ei.gate_b, ad.gate_b))
        with self.assertRaises(ValueError):   # n_sink differs from the EdgeInfinite layout's
            PodConfig.for_model(self.cfg, [0, 2], 5, 8).save_gguf(self.path("c.gguf"), ei_adapter=ad)
        with self.assertRaises(ValueError):   # n_recent > window
            PodConfig.for_model(self.cfg, [0, 2], 4, 17).save_gguf(self.path("c.gguf"), ei_adapter=ad)

    def _write(self, name, **over):
        """A kind 'pod' adapter with some keys replaced (value, type, elem type) or removed (None)."""
        keys = {"general.architecture": ("edgeinf-adapter", T.STRING, None),
                "edgeinf.adapter.version": (1, T.UINT32, None), "edgeinf.adapter.kind": ("pod", T.STRING, None),
                "edgeinf.adapter.n_layer": (4, T.UINT32, None), "edgeinf.adapter.n_head": (4, T.UINT32, None),
                "edgeinf.adapter.n_head_kv": (2, T.UINT32, None), "edgeinf.adapter.head_dim": (16, T.UINT32, None),
                "edgeinf.adapter.dim": (64, T.UINT32, None), "edgeinf.pod.n_sink": (4, T.UINT32, None),
                "edgeinf.pod.n_recent": (16, T.UINT32, None), "edgeinf.pod.share": ("scores", T.STRING, None),
                "edgeinf.pod.delta": (0.5, T.FLOAT32, None),
                "edgeinf.pod.block_starts": ([0, 2], T.ARRAY, T.UINT32)}
        keys.update(over)
        w = GGUFWriter()
        for k, v in keys.items():
            if v is not None:
                w.add(k, v[0], v[1], v[2])
        w.write(self.path(name))
        return self.path(name)

    def test_refusals(self):
        load_pod_gguf(self._write("ok.gguf"), self.cfg)
        bad = {
            "delta0": {"edgeinf.pod.delta": (0.0, T.FLOAT32, None)},
            "delta_big": {"edgeinf.pod.delta": (1.5, T.FLOAT32, None)},
            "delta_neg": {"edgeinf.pod.delta": (-0.2, T.FLOAT32, None)},
            "delta_nan": {"edgeinf.pod.delta": (float("nan"), T.FLOAT32, None)},
            "delta_missing": {"edgeinf.pod.delta": None},
            "starts_1": {"edgeinf.pod.block_starts": ([1, 2], T.ARRAY, T.UINT32)},
            "starts_dup": {"edgeinf.pod.block_starts": ([0, 2, 2], T.ARRAY, T.UINT32)},
            "starts_past": {"edgeinf.pod.block_starts": ([0, 4], T.ARRAY, T.UINT32)},
            "starts_empty": {"edgeinf.pod.block_starts": ([], T.ARRAY, T.UINT32)},
            "starts_i32": {"edgeinf.pod.block_starts": ([0, 2], T.ARRAY, T.INT32)},
            "starts_missing": {"edgeinf.pod.block_starts": None},
            "recent0": {"edgeinf.pod.n_recent": (0, T.UINT32, None)},
            "share": {"edgeinf.pod.share": ("values", T.STRING, None)},
            "kind": {"edgeinf.adapter.kind": ("edgeinfinite", T.STRING, None)},
            "version": {"edgeinf.adapter.version": (2, T.UINT32, None)},
            "layers": {"edgeinf.adapter.n_layer": (6, T.UINT32, None)},
            "heads_kv": {"edgeinf.adapter.n_head_kv": (4, T.UINT32, None)},
        }
        for name, over in bad.items():
            with self.subTest(name), self.assertRaises(ValueError):
                load_pod_gguf(self._write(name + ".gguf", **over), self.cfg)


ROOT = os.path.dirname(MODELS)
FIX_POD = os.path.join(ROOT, "tests", "fixtures", "tiny-pod")


class TestPodFixtures(unittest.TestCase):
    """The committed tiny-pod fixtures agree with the reference and are reproducible from make_tiny_pod.py."""

    @classmethod
    def setUpClass(cls):
        import json
        with open(os.path.join(FIX_POD, "manifest.json"), encoding="utf-8") as f:
            cls.man = json.load(f)

    def test_sizes_and_inputs(self):
        import hashlib
        total = sum(os.path.getsize(os.path.join(FIX_POD, n)) for n in os.listdir(FIX_POD))
        self.assertLess(total, 1000 * 1000)
        for key in ("base_model", "ei_adapter"):
            with open(os.path.join(FIX_POD, self.man[key]["path"]), "rb") as f:
                self.assertEqual(hashlib.sha256(f.read()).hexdigest(), self.man[key]["sha256"],
                                 f"{key} changed: regenerate tiny-pod")
        self.assertEqual(len(self.man["edgeinfinite+pod"]["evictions_at"]), 9)

    def test_logits_match_reference(self):
        from edgeinf_ref.export import load_gguf
        seq = torch.tensor([self.man["sequence"]])
        m, cfg, _ = load_gguf(os.path.join(FIX_POD, self.man["base_model"]["path"]), dtype=torch.float64)
        for run, e in self.man["runs"].items():
            with self.subTest(run):
                pc, ei = load_pod_gguf(os.path.join(FIX_POD, e["adapter"]), cfg)
                self.assertEqual((pc.share, pc.n_recent, pc.block_starts), (e["share"], e["n_recent"], [0]))
                pol = pc.policy() if e["policy"] == "pod" else pc.ei_pod_policy(ei.double())
                with torch.no_grad():
                    ref = m(seq, policy=pol)[0].numpy()
                lg = np.fromfile(os.path.join(FIX_POD, e["logits_file"]), dtype="<f4").reshape(e["logits_shape"])
                np.testing.assert_allclose(lg, ref, rtol=0, atol=1e-5)
                self.assertEqual(lg.shape, (self.man["n_rows"], self.man["vocab"]))

    def test_expect_txt_matches_manifest(self):
        for run, e in self.man["runs"].items():
            kv = {}
            with open(os.path.join(FIX_POD, run + ".expect.txt"), encoding="utf-8") as f:
                for line in f:
                    if line.startswith("#") or not line.strip():
                        continue
                    k, *v = line.split()
                    kv[k] = v
            self.assertEqual(kv["policy"], [e["policy"]])
            self.assertEqual(kv["share"], [e["share"]])
            self.assertEqual(kv["adapter"], [e["adapter"]])
            self.assertEqual([int(x) for x in kv["sequence"]], self.man["sequence"])
            self.assertEqual([int(x) for x in kv["greedy"]], e["greedy"])
            self.assertEqual(kv["logits"], [e["logits_file"]])
            self.assertEqual(int(kv["n_recent"][0]), e["n_recent"])
            st = e["stats_after_sequence"]
            self.assertEqual([int(x) for x in kv["keys_per_layer"]], st["keys_per_layer"])
            self.assertEqual(int(kv["kv_bytes_held"][0]), st["kv_bytes_held"])
            self.assertEqual(int(kv["compressions"][0]), st["compressions"])

    def test_regeneration_is_byte_identical(self):
        import contextlib
        import hashlib
        import io
        sys.path.insert(0, os.path.join(MODELS, "tools"))
        import make_tiny_pod
        with tempfile.TemporaryDirectory() as td:
            with contextlib.redirect_stdout(io.StringIO()):
                make_tiny_pod.main(td, os.path.join(ROOT, "tests", "fixtures", "tiny"),
                                   os.path.join(ROOT, "tests", "fixtures", "tiny-ei"))
            self.assertEqual(sorted(os.listdir(FIX_POD)), sorted(os.listdir(td)))
            for n in sorted(os.listdir(FIX_POD)):
                with open(os.path.join(FIX_POD, n), "rb") as a, open(os.path.join(td, n), "rb") as b:
                    self.assertEqual(hashlib.sha256(a.read()).hexdigest(), hashlib.sha256(b.read()).hexdigest(), n)


class TestCalibrationMath(unittest.TestCase):
    def test_js_similarity(self):
        p = torch.tensor([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]], dtype=torch.float64)
        q = torch.tensor([[0.5, 0.5, 0.0], [0.0, 1.0, 0.0]], dtype=torch.float64)
        s = pod_calibrate.js_similarity(p, q)
        self.assertAlmostEqual(float(s[0]), 1.0, places=12)
        self.assertAlmostEqual(float(s[1]), 0.0, places=12)
        a = torch.tensor([[0.9, 0.1]], dtype=torch.float64)
        b = torch.tensor([[0.1, 0.9]], dtype=torch.float64)
        m = (a + b) / 2
        jsd = 0.5 * float((a * (a / m).log()).sum() + (b * (b / m).log()).sum())
        self.assertAlmostEqual(float(pod_calibrate.js_similarity(a, b)[0]), 1 - jsd / math.log(2), places=12)

    def test_greedy_blocks(self):
        S = np.array([[1.0, 0.9, 0.8, 0.5],
                      [0.9, 1.0, 0.95, 0.6],
                      [0.8, 0.95, 1.0, 0.9],
                      [0.5, 0.6, 0.9, 1.0]])
        # similarity to the block's ANCHOR decides, not to the previous layer
        self.assertEqual(pod_calibrate.greedy_blocks(S, 0.85), [[0, 1], [2, 3]])
        self.assertEqual(pod_calibrate.greedy_blocks(S, 0.75), [[0, 1, 2], [3]])
        self.assertEqual(pod_calibrate.greedy_blocks(S, 0.5), [[0, 1, 2, 3]])
        self.assertEqual(pod_calibrate.greedy_blocks(S, 1.0), [[0], [1], [2], [3]])
        for d in (0.0, -0.1, 1.01, float("nan")):
            with self.assertRaises(ValueError):
                pod_calibrate.greedy_blocks(S, d)

    def test_calibration_end_to_end_tiny(self):
        """pod_calibrate on the tiny fixture model: similarity in [0, 1] with a unit diagonal, blocks per δ from it,
        measured KV bytes == formula (asserted inside), adapters that load, a PNG; δ outside (0, 1] exits 2."""
        import contextlib
        import io
        tiny = os.path.join(ROOT, "tests", "fixtures", "tiny")
        args = ["--model", os.path.join(tiny, "tiny-f32.gguf"), "--corpus", os.path.join(tiny, "corpus.txt"),
                "--n-sink", "4", "--n-recent", "16", "--seq-len", "128", "--windows", "2", "--queries", "16",
                "--min-distant", "16", "--eval-windows", "2", "--threads", "1"]
        with tempfile.TemporaryDirectory() as td:
            with contextlib.redirect_stdout(io.StringIO()):
                res = pod_calibrate.main(args + ["--delta", "0.3", "1", "--out-dir", td,
                                                 "--png", os.path.join(td, "s.png")])
            S = np.array(res["similarity"])
            K = np.array(res["similarity_keys"])
            np.testing.assert_allclose(np.diag(K), 1.0)
            self.assertTrue(0.0 <= K[0, 1] < 1.0)
            self.assertEqual(S.shape, (2, 2))
            np.testing.assert_allclose(np.diag(S), 1.0)
            self.assertTrue(0.0 <= S[0, 1] < 1.0)
            self.assertEqual(res["per_delta"][0]["blocks"], [[0, 1]] if S[0, 1] >= 0.3 else [[0], [1]])
            self.assertEqual(res["per_delta"][1]["blocks"], [[0], [1]])
            self.assertEqual(res["per_delta"][1]["kv_saved"], 0.0)
            self.assertLess(abs(res["per_delta"][1]["ppl"]["scores"] / res["eval"]["full_ppl"] - 1), 1e-5)
            self.assertLess(res["per_delta"][1]["kl_vs_full"]["keys"], 1e-6)
            self.assertGreater(res["eval"]["proximal_only_kl"], 1e-4)
            pc, _ = load_pod_gguf(res["per_delta"][0]["adapter"])
            self.assertEqual(pc.blocks, res["per_delta"][0]["blocks"])
            self.assertTrue(os.path.getsize(os.path.join(td, "s.png")) > 1000)
            for d in ("0", "1.5"):
                with self.assertRaises(SystemExit) as cm, contextlib.redirect_stderr(io.StringIO()):
                    pod_calibrate.main(args + ["--delta", d, "--out-dir", td, "--png", ""])
                self.assertEqual(cm.exception.code, 2)


if __name__ == "__main__":
    unittest.main()
