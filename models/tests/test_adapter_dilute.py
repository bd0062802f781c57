"""The virtual-length device of models/train_adapter.py (--dilute): weighted compressions (memory.compress's weight),
the per-segment weights of a passkey row (dilution_weights) and the batched policy's seg_weight hook. Weight 1 must
be the contract exactly; a weight w must scale one segment's contribution to M and z by w."""
from __future__ import annotations

import os
import subprocess
import sys
import unittest

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from edgeinf_ref.adapter import EdgeInfAdapter  # noqa: E402
from edgeinf_ref.attention import EdgeInfinitePolicy, SegmentLayout  # noqa: E402
from edgeinf_ref.llama import Llama, LlamaConfig  # noqa: E402
from edgeinf_ref.memory import compress, empty_memory, retrieve, sigma  # noqa: E402
from train_adapter import dilution_weights  # noqa: E402

torch.set_num_threads(1)


class WeightedCompress(unittest.TestCase):
    def setUp(self):
        g = torch.Generator().manual_seed(3)
        self.k = torch.randn(3, 2, 8, 16, generator=g, dtype=torch.float64)
        self.v = torch.randn(3, 2, 8, 16, generator=g, dtype=torch.float64)
        M, z = empty_memory(3, 2, 16, "cpu", torch.float64)
        # a non-empty memory to start from: one unweighted segment
        self.M, self.z = compress(M, z, torch.randn(3, 2, 8, 16, generator=g, dtype=torch.float64),
                                  torch.randn(3, 2, 8, 16, generator=g, dtype=torch.float64), 1e-6)

    def test_weight_one_is_the_contract(self):
        a = compress(self.M, self.z, self.k, self.v, 1e-6)
        b = compress(self.M, self.z, self.k, self.v, 1e-6, weight=torch.ones(3))
        self.assertTrue(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]))

    def test_weight_scales_each_rows_update(self):
        w = torch.tensor([1.0, 4.0, 250.0])
        M1, z1 = compress(self.M, self.z, self.k, self.v, 1e-6)
        Mw, zw = compress(self.M, self.z, self.k, self.v, 1e-6, weight=w)
        for b in range(3):
            # computed here from the formula, token by token: the update uses M, z from before the segment
            sk = sigma(self.k[b])                                           # (n_kv, seg, hd)
            vret = torch.einsum("gsa,gac->gsc", sk, self.M[b]) / (
                torch.einsum("gsa,ga->gs", sk, self.z[b]).unsqueeze(-1) + 1e-6)
            dM = torch.einsum("gsa,gsc->gac", sk, self.v[b] - vret)
            torch.testing.assert_close(Mw[b], self.M[b] + w[b].double() * dM, rtol=1e-12, atol=1e-9)
            torch.testing.assert_close(zw[b], self.z[b] + w[b].double() * sk.sum(1), rtol=1e-12, atol=1e-9)
        self.assertTrue(torch.equal(Mw[0], M1[0]))

    def test_weight_dilutes_an_earlier_key(self):
        """The point of it: after a key segment, one filler segment of weight w moves the read of the key's own
        query further from the key's value than the same segment at weight 1 does."""
        M, z = empty_memory(1, 1, 16, "cpu", torch.float64)
        g = torch.Generator().manual_seed(5)
        kk, vk = torch.randn(1, 1, 1, 16, generator=g, dtype=torch.float64), torch.randn(1, 1, 1, 16, generator=g,
                                                                                           dtype=torch.float64)
        M, z = compress(M, z, kk, vk, 1e-6)
        torch.testing.assert_close(retrieve(kk, M, z, 1e-6), vk)           # one key alone reads back exactly
        kf = torch.randn(1, 1, 8, 16, generator=g, dtype=torch.float64)
        vf = torch.randn(1, 1, 8, 16, generator=g, dtype=torch.float64)
        err = [float((retrieve(kk, *compress(M, z, kf, vf, 1e-6, weight=torch.tensor([w])), 1e-6) - vk).norm())
               for w in (1.0, 100.0)]
        self.assertGreater(err[1], err[0])


class Weights(unittest.TestCase):
    def test_key_segments_weigh_one(self):
        lay = SegmentLayout(4, 16, 8)
        # tokens 4.. are segments of 8: the key line [13, 22) touches segments 1 (12-19) and 2 (20-27)
        w = dilution_weights(lay, (13, 22), 60, 50)
        self.assertEqual(len(w), 7)                                        # ceil((60 - 4) / 8)
        self.assertEqual(w, [50.0, 1.0, 1.0, 50.0, 50.0, 50.0, 50.0])
        self.assertEqual(dilution_weights(lay, (4, 12), 20, 9), [1.0, 9.0])


class PolicyHook(unittest.TestCase):
    def test_seg_weight_hook(self):
        torch.manual_seed(0)
        cfg = LlamaConfig(vocab_size=96, dim=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=96, max_seq_len=128)
        model = Llama(cfg).double()
        ad = EdgeInfAdapter.for_model(cfg, rank=2, n_sink=4, window=16, seg=8, gate_bias=0.0,
                                      generator=torch.Generator().manual_seed(0)).double()
        pol = EdgeInfinitePolicy(4, 16, 8, ad)
        x = torch.randint(0, 96, (2, 84))
        with torch.no_grad():
            ref = model(x, policy=pol)
            n = -(-(84 - 4) // 8)
            pol.seg_weight = torch.ones(2, n)
            same = model(x, policy=pol)
            w = torch.ones(2, n)
            w[1, 0] = 30.0          # row 1's first compressed segment weighs 30
            pol.seg_weight = w
            diff = model(x, policy=pol)
            pol.seg_weight = None
        self.assertTrue(torch.equal(ref, same))
        self.assertTrue(torch.equal(ref[0], diff[0]))                     # row 0 untouched
        # row 1: identical until memory is first read (segment W+1 = 3: tokens 4 + 3*8 = 28 on), different after
        self.assertTrue(torch.equal(ref[1, :28], diff[1, :28]))
        self.assertGreater(float((ref[1, 28:] - diff[1, 28:]).abs().max()), 1e-6)


class BadArguments(unittest.TestCase):
    def test_refused_before_anything_loads(self):
        script = os.path.join(os.path.dirname(HERE), "train_adapter.py")
        for bad in (["--dilute", "-4"], ["--dilute", "64", "--dilute-frac", "1.5"]):
            r = subprocess.run([sys.executable, script, "--model", "no-such.gguf", "--out", "x.gguf", *bad],
                               capture_output=True, text=True)
            self.assertEqual(r.returncode, 2, r.stderr)
            self.assertIn("--dilute must be >= 0", r.stderr)


if __name__ == "__main__":
    unittest.main()
