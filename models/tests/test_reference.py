"""Tests of the PyTorch reference (models/edgeinf_ref) and of the tiny parity fixtures (tests/fixtures/tiny).

Run all Python tests with: /usr/bin/python3 models/tests/run.py
"""
from __future__ import annotations

import cmath
import hashlib
import json
import math
import os
import struct
import sys
import tempfile
import unittest

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
MODELS = os.path.dirname(HERE)
ROOT = os.path.dirname(MODELS)
sys.path.insert(0, MODELS)

from edgeinf_ref import quant  # noqa: E402
from edgeinf_ref.attention import Rope, causal_attention, masked_attention, _HAS_SDPA  # noqa: E402
from edgeinf_ref.export import export_gguf, load_gguf, read_spm_model  # noqa: E402
from edgeinf_ref.gguf import GGUFError, GGUFFile, GGUFWriter, T, read_gguf  # noqa: E402
from edgeinf_ref.llama import Llama, LlamaConfig  # noqa: E402

FIX = os.path.join(ROOT, "tests", "fixtures", "tiny")
TINY = dict(vocab_size=96, dim=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=96, max_seq_len=128)
torch.set_num_threads(1)


def tiny_model(seed=0, dtype=torch.float64, **kw):
    torch.manual_seed(seed)
    cfg = LlamaConfig(**{**TINY, **kw})
    m = Llama(cfg)
    with torch.no_grad():  # livelier than the training init, so differences show
        for name, p in m.named_parameters():
            if p.dim() == 1:
                p.uniform_(0.5, 1.5)
            else:
                p.normal_(0, 1.0 / math.sqrt(p.shape[1]))
    return m.to(dtype).eval(), cfg


# ----------------------------------------------------------------------------------------------------------
class TestGGUF(unittest.TestCase):
    def _writer(self, alignment=32):
        w = GGUFWriter(alignment=alignment)
        w.add("u8", 250, T.UINT8)
        w.add("i8", -100, T.INT8)
        w.add("u16", 65000, T.UINT16)
        w.add("i16", -32000, T.INT16)
        w.add("u32", 4000000000, T.UINT32)
        w.add("i32", -2000000000, T.INT32)
        w.add("f32", 1.5, T.FLOAT32)
        w.add("bool_t", True, T.BOOL)
        w.add("bool_f", False)
        w.add("str", "héllo ▁ 🙂")
        w.add("u64", 2**63 + 5, T.UINT64)
        w.add("i64", -2**62, T.INT64)
        w.add("f64", math.pi, T.FLOAT64)
        w.add("arr_str", ["a", "", "▁b"], T.ARRAY, T.STRING)
        w.add("arr_f32", [0.5, -2.0], T.ARRAY, T.FLOAT32)
        w.add("arr_i32", [1, -2, 3], T.ARRAY, T.INT32)
        w.add("arr_bool", [True, False, True], T.ARRAY, T.BOOL)
        w.add("arr_empty", [], T.ARRAY, T.UINT8)
        w.add("arr_nested", [(T.INT16, [1, 2]), (T.STRING, ["x"])], T.ARRAY, T.ARRAY)
        rng = np.random.default_rng(1)
        self.arrays = {
            "a.f32": (rng.normal(size=(3, 5)).astype(np.float32), quant.GGML_TYPE_F32),
            "b.f16": (rng.normal(size=(2, 7)).astype(np.float32), quant.GGML_TYPE_F16),
            "c.q8": (rng.normal(size=(4, 64)).astype(np.float32), quant.GGML_TYPE_Q8_0),
            "d.q4": (rng.normal(size=(3, 32)).astype(np.float32), quant.GGML_TYPE_Q4_0),
            "e.vec": (rng.normal(size=(9,)).astype(np.float32), quant.GGML_TYPE_F32),
        }
        for n, (a, t) in self.arrays.items():
            w.add_tensor_array(n, a, t)
        return w

    def test_round_trip_all_types(self):
        for al in (32, 64):
            w = self._writer(al)
            g = GGUFFile(w.to_bytes())
            self.assertEqual(g.version, 3)
            self.assertEqual(g.alignment, al)
            md = g.metadata
            self.assertEqual(md["u8"], 250)
            self.assertEqual(md["i8"], -100)
            self.assertEqual(md["u16"], 65000)
            self.assertEqual(md["i16"], -32000)
            self.assertEqual(md["u32"], 4000000000)
            self.assertEqual(md["i32"], -2000000000)
            self.assertEqual(md["f32"], 1.5)
            self.assertIs(md["bool_t"], True)
            self.assertIs(md["bool_f"], False)
            self.assertEqual(md["str"], "héllo ▁ 🙂")
            self.assertEqual(md["u64"], 2**63 + 5)
            self.assertEqual(md["i64"], -2**62)
            self.assertEqual(md["f64"], math.pi)
            self.assertEqual(md["arr_str"], ["a", "", "▁b"])
            self.assertEqual(md["arr_f32"].tolist(), [0.5, -2.0])
            self.assertEqual(md["arr_i32"].tolist(), [1, -2, 3])
            self.assertEqual(md["arr_bool"].tolist(), [True, False, True])
            self.assertEqual(len(md["arr_empty"]), 0)
            self.assertEqual([x.tolist() if hasattr(x, "tolist") else x for x in md["arr_nested"]], [[1, 2], ["x"]])
            self.assertEqual(g.types["u8"], (T.UINT8, None))
            self.assertEqual(g.types["arr_str"], (T.ARRAY, T.STRING))
            self.assertEqual(g.types["bool_f"], (T.BOOL, None))
            self.assertEqual(list(g.tensors), list(self.arrays))
            self.assertEqual(g.data_offset % al, 0)
            for n, (a, t) in self.arrays.items():
                ti = g.tensors[n]
                self.assertEqual(ti.ne, tuple(reversed(a.shape)))
                self.assertEqual(ti.ggml_type, t)
                self.assertEqual(ti.offset % al, 0)
                self.assertEqual(bytes(ti.data), quant.quantize(t, a))
            np.testing.assert_array_equal(g.tensor("a.f32"), self.arrays["a.f32"][0])

    def test_header_bytes_by_hand(self):
        w = GGUFWriter()
        w.add("k", 7, T.UINT32)
        w.add_tensor("t", struct.pack("<2f", 1.0, 2.0), (2,), quant.GGML_TYPE_F32)
        b = w.to_bytes()
        exp = (b"GGUF" + struct.pack("<IQQ", 3, 1, 1) + struct.pack("<Q", 1) + b"k" + struct.pack("<II", 4, 7)
               + struct.pack("<Q", 1) + b"t" + struct.pack("<IQIQ", 1, 2, 0, 0))
        self.assertEqual(b[:len(exp)], exp)
        self.assertEqual(len(exp), 74)
        self.assertEqual(b[74:96], bytes(22))  # header padded to 96
        self.assertEqual(len(b), 96 + 32)       # 8 data bytes padded to 32
        self.assertEqual(b[96:104], struct.pack("<2f", 1.0, 2.0))

    def test_reads_v2(self):
        b = bytearray(self._writer().to_bytes())
        b[4:8] = struct.pack("<I", 2)
        g = GGUFFile(bytes(b))
        self.assertEqual(g.version, 2)
        self.assertEqual(g.metadata["str"], "héllo ▁ 🙂")

    def test_rejects_broken_files(self):
        good = self._writer().to_bytes()
        bad = {
            "magic": b"GGUX" + good[4:],
            "version1": good[:4] + struct.pack("<I", 1) + good[8:],
            "version4": good[:4] + struct.pack("<I", 4) + good[8:],
            "truncated_header": good[:30],
            "truncated_data": good[:-40],
            "huge_count": good[:8] + struct.pack("<Q", 2**40) + good[16:],
        }
        for name, data in bad.items():
            with self.subTest(name):
                with self.assertRaises(GGUFError):
                    GGUFFile(data)
        w = GGUFWriter()
        w.add("x", 1, T.UINT32)
        b = bytearray(w.to_bytes())
        b[24 + 9:24 + 13] = struct.pack("<I", 99)  # value type of key "x"
        with self.assertRaises(GGUFError):
            GGUFFile(bytes(b))

    def test_writer_rejects_wrong_sizes(self):
        w = GGUFWriter()
        with self.assertRaises(ValueError):
            w.add_tensor("t", b"\0" * 7, (2,), quant.GGML_TYPE_F32)
        with self.assertRaises(ValueError):  # 96 elements, but rows of 48 do not split into blocks of 32
            w.add_tensor_array("q", np.zeros((2, 48), np.float32), quant.GGML_TYPE_Q8_0)

    def test_reader_rejects_rows_not_in_blocks(self):
        w = GGUFWriter()
        w.add_tensor("q", bytes(3 * 34), (96,), quant.GGML_TYPE_Q8_0)
        b = w.to_bytes()
        i = b.index(struct.pack("<IQ", 1, 96))
        b = b[:i] + struct.pack("<IQQ", 2, 48, 2) + b[i + 12:]
        with self.assertRaises(GGUFError):
            GGUFFile(b)


# ----------------------------------------------------------------------------------------------------------
def q8_scalar(x):
    """Straight-line transcription of ggml's quantize_row_q8_0_ref math, element by element (cross-check of the
    vectorised numpy code): float32 everywhere, roundf = halves away from zero."""
    out = b""
    f32 = np.float32
    for b in range(len(x) // 32):
        blk = [f32(v) for v in x[32 * b:32 * b + 32]]
        amax = f32(0)
        for v in blk:
            amax = max(amax, f32(abs(v)))
        d = f32(amax / f32(127))
        inv = f32(f32(1) / d) if d != 0 else f32(0)
        qs = []
        for v in blk:
            y = f32(v * inv)
            r = math.floor(abs(float(y))) + (1 if abs(float(y)) - math.floor(abs(float(y))) >= 0.5 else 0)
            qs.append(int(math.copysign(r, float(y))))
        out += np.float16(d).tobytes() + struct.pack("<32b", *qs)
    return out


def q4_scalar(x):
    out = b""
    f32 = np.float32
    for b in range(len(x) // 32):
        blk = [f32(v) for v in x[32 * b:32 * b + 32]]
        amax, mx = f32(0), f32(0)
        for v in blk:
            if amax < abs(v):
                amax, mx = f32(abs(v)), v
        d = f32(mx / f32(-8))
        inv = f32(f32(1) / d) if d != 0 else f32(0)
        q = [min(15, int(f32(f32(v * inv) + f32(8.5)))) for v in blk]  # int() truncates like (int8_t)
        out += np.float16(d).tobytes() + bytes(q[j] | (q[j + 16] << 4) for j in range(16))
    return out


class TestQuant(unittest.TestCase):
    def test_q8_0_hand_block(self):
        # amax 127 -> d = 1, id = 1: q = roundf(x), halves away from zero (np.round would give 2 and -2)
        x = np.zeros(32, np.float32)
        x[:9] = [127, -127, 2.5, -2.5, 0.5, -0.5, 1.49, 3.51, -0.49]
        b = quant.quantize_q8_0(x)
        self.assertEqual(b[:2], b"\x00\x3c")  # f16 1.0
        self.assertEqual(list(struct.unpack("<9b", b[2:11])), [127, -127, 3, -3, 1, -1, 1, 4, 0])
        self.assertEqual(b[11:], bytes(23))
        self.assertEqual(quant.quantize_q8_0(np.zeros(32)), bytes(34))

    def test_q4_0_hand_block(self):
        # first abs-max element -8 -> d = 1, q = min(15, trunc(x + 8.5))
        x = np.zeros(32, np.float32)
        x[0], x[1], x[2], x[3], x[4], x[5] = -8, 7, -0.5, 0.5, 0.49, -7.6
        x[16], x[17] = 6.9, -3
        b = quant.quantize_q4_0(x)
        self.assertEqual(b[:2], b"\x00\x3c")
        q = [0, 15, 8, 9, 8, 0] + [8] * 10 + [15, 5] + [8] * 14
        self.assertEqual(b[2:], bytes(q[j] | (q[j + 16] << 4) for j in range(16)))
        # ties: +8 comes first -> d = -1; the -8 element maps to 16.5 -> clamped to 15
        y = np.zeros(32, np.float32)
        y[3], y[20] = 8, -8
        b = quant.quantize_q4_0(y)
        self.assertEqual(b[:2], np.float16(-1).tobytes())
        self.assertEqual(b[2 + 3] & 0xF, 0)
        self.assertEqual(b[2 + 4] >> 4, 15)
        # all zero: d = 0.0f / -8 = -0.0f, stored as f16 0x8000 (as ggml does); id = 0 -> every q = 8
        self.assertEqual(quant.quantize_q4_0(np.zeros(32)), b"\x00\x80" + b"\x88" * 16)

    def test_matches_scalar_transcription(self):
        rng = np.random.default_rng(7)
        x = (rng.normal(size=32 * 40) * rng.uniform(0.01, 100, size=32 * 40)).astype(np.float32)
        x[:32] = np.round(x[:32])  # integer-valued block hits exact .5 products
        self.assertEqual(quant.quantize_q8_0(x), q8_scalar(x))
        self.assertEqual(quant.quantize_q4_0(x), q4_scalar(x))

    def test_round_trip_error_bounds(self):
        rng = np.random.default_rng(3)
        x = rng.normal(size=(8, 128)).astype(np.float32)
        # |x - q*d| <= bound*d, plus |q| * (f16 rounding of d, relative 2^-11) since q was computed with the
        # unrounded d: q8 |q| <= 127, q4 |q - 8| <= 8
        for t, bound in ((quant.GGML_TYPE_Q8_0, 0.5 + 127 * 2**-11), (quant.GGML_TYPE_Q4_0, 1.0 + 8 * 2**-11)):
            b = quant.quantize(t, x)
            self.assertEqual(len(b), quant.nbytes(t, x.size))
            y = quant.dequantize(t, b, x.size).reshape(x.shape)
            blocks = np.frombuffer(b, dtype=quant.Q8_0_DTYPE if t == quant.GGML_TYPE_Q8_0 else quant.Q4_0_DTYPE)
            d = np.abs(blocks["d"].astype(np.float32)).repeat(32).reshape(x.shape)
            err = np.abs(y - x)
            self.assertTrue(np.all(err <= bound * d * 1.001 + 1e-7), (t, float((err / d).max())))
        y = quant.dequantize(quant.GGML_TYPE_F16, quant.quantize(quant.GGML_TYPE_F16, x), x.size)
        np.testing.assert_array_equal(y, x.astype(np.float16).astype(np.float32).reshape(-1))

    def test_dequant_by_hand(self):
        b = np.float16(0.5).tobytes() + bytes([0x0F, 0xF0]) + bytes(14)
        y = quant.dequantize_q4_0(b, 32)
        self.assertEqual(y[0], (15 - 8) * 0.5)
        self.assertEqual(y[16], (0 - 8) * 0.5)
        self.assertEqual(y[1], 0.0 - 4.0)
        self.assertEqual(y[17], (15 - 8) * 0.5)


# ----------------------------------------------------------------------------------------------------------
class TestModel(unittest.TestCase):
    def test_rope_adjacent_pairs(self):
        """(x[2i] + i x[2i+1]) * exp(i * pos * theta^(-2i/d)), written independently with complex numbers."""
        d, theta = 8, 10000.0
        rope = Rope(d, theta)
        x = torch.randn(1, 1, 3, d, dtype=torch.float64)
        pos = torch.tensor([0, 5, 1000003])
        y = rope.apply(x, pos)
        for t in range(3):
            for i in range(d // 2):
                z = complex(x[0, 0, t, 2 * i], x[0, 0, t, 2 * i + 1]) * cmath.exp(
                    1j * int(pos[t]) * theta ** (-2 * i / d))
                self.assertAlmostEqual(float(y[0, 0, t, 2 * i]), z.real, places=9)
                self.assertAlmostEqual(float(y[0, 0, t, 2 * i + 1]), z.imag, places=9)

    def test_rmsnorm_formula(self):
        m, _ = tiny_model()
        x = torch.randn(2, 3, 64, dtype=torch.float64)
        n = m.layers[0].attention_norm
        exp = x / torch.sqrt((x * x).mean(-1, keepdim=True) + n.eps) * n.weight
        torch.testing.assert_close(n(x), exp)

    def test_gqa_mapping(self):
        """Query head h reads kv head h // (n_heads / n_kv): a GQA model equals an MHA model whose K/V rows
        are each kv head's rows repeated for its group."""
        g, cfg = tiny_model(seed=4)
        mha, _ = tiny_model(seed=5, n_kv_heads=4)
        sd = g.state_dict()
        hd = cfg.head_dim
        for k in list(sd):
            if k.endswith("wk.weight") or k.endswith("wv.weight"):
                w = sd[k].view(cfg.n_kv_heads, hd, cfg.dim)
                sd[k] = w.repeat_interleave(cfg.n_heads // cfg.n_kv_heads, dim=0).reshape(-1, cfg.dim)
        mha.load_state_dict(sd)
        t = torch.randint(0, cfg.vocab_size, (1, 12))
        with torch.no_grad():
            torch.testing.assert_close(g(t), mha(t), rtol=0, atol=1e-12)

    def test_incremental_equals_batched(self):
        for tied in (True, False):
            m, cfg = tiny_model(seed=1, tie_embeddings=tied)
            t = torch.randint(0, cfg.vocab_size, (2, 23))
            with torch.no_grad():
                full = m(t)
                for chunks in ([23], [1] * 23, [5, 1, 7, 10], [2, 21]):
                    st = m.new_state(None, batch=2)
                    outs, s = [], 0
                    for c in chunks:
                        outs.append(m(t[:, s:s + c], state=st))
                        s += c
                    self.assertEqual(st.pos, 23)
                    self.assertEqual(len(st.layers[0]), 23)
                    torch.testing.assert_close(torch.cat(outs, 1), full, rtol=0, atol=1e-12)

    def test_causal(self):
        m, cfg = tiny_model(seed=2)
        t = torch.randint(0, cfg.vocab_size, (1, 10))
        t2 = t.clone()
        t2[0, 7:] = (t2[0, 7:] + 1) % cfg.vocab_size
        with torch.no_grad():
            torch.testing.assert_close(m(t)[:, :7], m(t2)[:, :7], rtol=0, atol=0)
            self.assertGreater(float((m(t)[:, 7:] - m(t2)[:, 7:]).abs().max()), 1e-3)

    @unittest.skipUnless(_HAS_SDPA, "torch without scaled_dot_product_attention")
    def test_sdpa_path_matches_manual(self):
        q = torch.randn(2, 4, 9, 16)
        k, v = torch.randn(2, 2, 9, 16), torch.randn(2, 2, 9, 16)
        pos = torch.arange(9)
        torch.testing.assert_close(causal_attention(q, k, v, 0.25), masked_attention(q, k, v, pos, pos, 0.25),
                                   rtol=1e-4, atol=1e-5)

    def test_training_step(self):
        m, cfg = tiny_model(dtype=torch.float32)
        m.train()
        t = torch.randint(0, cfg.vocab_size, (2, 16))
        loss = torch.nn.functional.cross_entropy(m(t[:, :-1]).reshape(-1, cfg.vocab_size), t[:, 1:].reshape(-1))
        loss.backward()
        self.assertTrue(all(p.grad is not None for p in m.parameters()))


# ----------------------------------------------------------------------------------------------------------
class TestExport(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()

    def tearDown(self):
        self.tmp.cleanup()

    def test_export_reload_equals_model(self):
        tok = os.path.join(FIX, "tokenizer.model")
        for tied in (True, False):
            m, cfg = tiny_model(seed=3, dtype=torch.float32, vocab_size=384, tie_embeddings=tied)
            sd = m.state_dict()
            for ftype in ("f32", "f16", "q8_0", "q4_0"):
                with self.subTest(tied=tied, ftype=ftype):
                    p = os.path.join(self.tmp.name, f"m-{ftype}.gguf")
                    types = export_gguf(m, cfg, p, tokenizer_model=tok, ftype=ftype, name="t")
                    m2, cfg2, g = load_gguf(p)
                    self.assertEqual(("output.weight" in g.tensors), not tied)
                    self.assertEqual(cfg2.dim, cfg.dim)
                    self.assertEqual(cfg2.n_kv_heads, cfg.n_kv_heads)
                    self.assertEqual(cfg2.tie_embeddings, tied)
                    self.assertEqual(types["output_norm.weight"], quant.GGML_TYPE_F32)
                    self.assertEqual(types["blk.0.attn_norm.weight"], quant.GGML_TYPE_F32)
                    self.assertEqual(types["token_embd.weight"], quant.TYPE_NAMES.__class__ and
                                     {"f32": 0, "f16": 1, "q4_0": 2, "q8_0": 8}[ftype])
                    self.assertEqual(g.tensors["blk.1.ffn_down.weight"].ne, (cfg.ffn_dim, cfg.dim))
                    self.assertEqual(g.tensors["token_embd.weight"].ne, (cfg.dim, cfg.vocab_size))
                    sd2 = m2.state_dict()
                    for k, v in sd.items():
                        w = v.numpy()
                        if w.ndim == 1 or ftype == "f32":
                            exp = w
                        elif ftype == "f16":
                            exp = w.astype(np.float16).astype(np.float32)
                        else:
                            t = quant.GGML_TYPE_Q8_0 if ftype == "q8_0" else quant.GGML_TYPE_Q4_0
                            exp = quant.dequantize(t, quant.quantize(t, w), w.size).reshape(w.shape)
                        np.testing.assert_array_equal(sd2[k].numpy(), exp, err_msg=k)
                    if ftype == "f32":
                        t = torch.randint(0, 384, (1, 9))
                        with torch.no_grad():
                            torch.testing.assert_close(m2(t), m(t), rtol=0, atol=0)

    def test_metadata(self):
        import sentencepiece as spm
        tok = os.path.join(FIX, "tokenizer.model")
        m, cfg = tiny_model(dtype=torch.float32, vocab_size=400)  # padded beyond the tokenizer's 384
        p = os.path.join(self.tmp.name, "m.gguf")
        export_gguf(m, cfg, p, tokenizer_model=tok, ftype="q8_0", name="meta-test")
        g = read_gguf(p)
        md = g.metadata
        expect = {
            "general.architecture": ("llama", T.STRING), "general.name": ("meta-test", T.STRING),
            "general.file_type": (7, T.UINT32), "llama.context_length": (128, T.UINT32),
            "llama.embedding_length": (64, T.UINT32), "llama.block_count": (2, T.UINT32),
            "llama.feed_forward_length": (96, T.UINT32), "llama.attention.head_count": (4, T.UINT32),
            "llama.attention.head_count_kv": (2, T.UINT32), "llama.rope.dimension_count": (16, T.UINT32),
            "llama.vocab_size": (400, T.UINT32), "tokenizer.ggml.model": ("llama", T.STRING),
            "tokenizer.ggml.add_bos_token": (True, T.BOOL), "tokenizer.ggml.add_eos_token": (False, T.BOOL),
            "edgeinf.tokenizer.algorithm": ("bpe", T.STRING),
            "edgeinf.tokenizer.add_dummy_prefix": (True, T.BOOL),
            "edgeinf.tokenizer.remove_extra_whitespaces": (True, T.BOOL),
        }
        for k, (v, t) in expect.items():
            self.assertEqual(md[k], v, k)
            self.assertEqual(g.types[k][0], t, k)
        self.assertAlmostEqual(md["llama.attention.layer_norm_rms_epsilon"], 1e-5, places=10)
        self.assertEqual(md["llama.rope.freq_base"], 10000.0)
        self.assertIn("tokenizer.chat_template", md)
        sp = spm.SentencePieceProcessor(model_file=tok)
        toks, types, scores = md["tokenizer.ggml.tokens"], md["tokenizer.ggml.token_type"], md["tokenizer.ggml.scores"]
        self.assertEqual(len(toks), 400)
        self.assertEqual(g.types["tokenizer.ggml.scores"], (T.ARRAY, T.FLOAT32))
        self.assertEqual(g.types["tokenizer.ggml.token_type"], (T.ARRAY, T.INT32))
        for i in range(sp.get_piece_size()):
            self.assertEqual(toks[i], sp.id_to_piece(i))
            self.assertEqual(float(scores[i]), np.float32(sp.get_score(i)))
        self.assertEqual(types[sp.unk_id()], 2)
        self.assertEqual(types[sp.bos_id()], 3)
        self.assertEqual(types[sp.eos_id()], 3)
        self.assertEqual(toks[sp.piece_to_id("<0x41>")], "<0x41>")
        self.assertEqual(types[sp.piece_to_id("<0x41>")], 6)
        self.assertEqual(types[300], 1)
        self.assertEqual(types[390], 5)
        self.assertEqual(md["tokenizer.ggml.bos_token_id"], sp.bos_id())
        self.assertEqual(md["tokenizer.ggml.eos_token_id"], sp.eos_id())
        self.assertEqual(md["tokenizer.ggml.unknown_token_id"], sp.unk_id())
        self.assertNotIn("tokenizer.ggml.padding_token_id", md)  # this tokenizer has no pad piece

    def test_spm_proto_parse(self):
        info = read_spm_model(os.path.join(FIX, "tokenizer.model"))
        self.assertEqual(info["model_type"], 2)
        self.assertTrue(info["byte_fallback"])
        self.assertEqual(len(info["pieces"]), 384)
        self.assertEqual(info["pieces"][0][2], 2)  # <unk>


# ----------------------------------------------------------------------------------------------------------
class TestFixtures(unittest.TestCase):
    """The committed tiny fixtures agree with the reference and are reproducible from make_tiny.py."""

    @classmethod
    def setUpClass(cls):
        with open(os.path.join(FIX, "manifest.json"), encoding="utf-8") as f:
            cls.man = json.load(f)

    def test_sizes(self):
        total = sum(os.path.getsize(os.path.join(FIX, n)) for n in os.listdir(FIX))
        self.assertLess(total, 2 * 1024 * 1024)
        for n in self.man["models"]:
            self.assertLess(os.path.getsize(os.path.join(FIX, n)), 400 * 1024)

    def test_prompt_tokenization(self):
        import sentencepiece as spm
        sp = spm.SentencePieceProcessor(model_file=os.path.join(FIX, "tokenizer.model"))
        self.assertEqual(self.man["prompt_ids"], [sp.bos_id()] + sp.encode(self.man["prompt_text"]))

    def test_logits_match_reference(self):
        for fname, e in self.man["models"].items():
            with self.subTest(fname):
                m, cfg, _ = load_gguf(os.path.join(FIX, fname), dtype=torch.float64)
                lg = np.fromfile(os.path.join(FIX, e["logits_file"]), dtype="<f4").reshape(e["logits_shape"])
                with torch.no_grad():
                    ref = m(torch.tensor([e["sequence"]]))[0].numpy()
                np.testing.assert_allclose(lg, ref, rtol=0, atol=1e-5)
                n_p = len(self.man["prompt_ids"])
                self.assertEqual(e["sequence"][:n_p], self.man["prompt_ids"])
                self.assertEqual(lg[n_p - 1:].argmax(-1).tolist(), e["greedy"])
                self.assertEqual(e["sequence"][n_p:], e["greedy"][:-1])
                self.assertGreaterEqual(len(set(e["greedy"])), 8)

    def test_expect_txt_matches_manifest(self):
        for fname, e in self.man["models"].items():
            kv = {}
            with open(os.path.join(FIX, fname[:-5] + ".expect.txt"), encoding="utf-8") as f:
                for line in f:
                    if line.startswith("#") or not line.strip():
                        continue
                    k, *v = line.split()
                    kv[k] = v
            self.assertEqual(kv["gguf"], [fname])
            self.assertEqual([int(x) for x in kv["sequence"]], e["sequence"])
            self.assertEqual([int(x) for x in kv["greedy"]], e["greedy"])
            self.assertEqual(int(kv["n_rows"][0]), e["logits_shape"][0])
            if "greedy_actq8" in e:
                self.assertEqual([int(x) for x in kv["greedy_actq8"]], e["greedy_actq8"])

    def test_detects_wrong_rope_convention(self):
        """A NEOX-style (half-split) RoPE bug must move the logits far beyond any parity tolerance."""
        e = self.man["models"]["tiny-f32.gguf"]
        m, cfg, _ = load_gguf(os.path.join(FIX, "tiny-f32.gguf"), dtype=torch.float64)
        lg = np.fromfile(os.path.join(FIX, e["logits_file"]), dtype="<f4").reshape(e["logits_shape"])
        good = m.rope.apply

        def neox(x, pos):
            h = x.shape[-1] // 2
            perm = torch.arange(x.shape[-1]).view(2, h).t().reshape(-1)   # [0,h,1,h+1,...]
            inv = torch.argsort(perm)
            return good(x[..., perm], pos)[..., inv]
        m.rope.apply = neox
        with torch.no_grad():
            bad = m(torch.tensor([e["sequence"]]))[0].numpy()
        self.assertGreater(float(np.abs(bad - lg).max()), 0.1)

    def test_regeneration_is_byte_identical(self):
        sys.path.insert(0, os.path.join(MODELS, "tools"))
        import make_tiny
        with tempfile.TemporaryDirectory() as td:
            import contextlib
            import io
            with contextlib.redirect_stdout(io.StringIO()):
                make_tiny.main(td)
            for n in sorted(os.listdir(FIX)):
                with open(os.path.join(FIX, n), "rb") as a, open(os.path.join(td, n), "rb") as b:
                    self.assertEqual(hashlib.sha256(a.read()).hexdigest(), hashlib.sha256(b.read()).hexdigest(), n)
            self.assertEqual(sorted(os.listdir(FIX)), sorted(os.listdir(td)))


if __name__ == "__main__":
    unittest.main()
