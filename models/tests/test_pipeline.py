"""Fast checks of the default-model pipeline's pieces (no packages installed, no training):
corpus cleaning, passkey rows, the learning-rate schedule, the tokenizer settings.
The end-to-end check is `make model-smoke`."""
import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import unittest

MODELS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, MODELS)
sys.path.insert(0, os.path.join(MODELS, "corpus"))

import build  # noqa: E402  (models/corpus/build.py)
import train  # noqa: E402  (models/train.py)


class CorpusCleaning(unittest.TestCase):
    def test_rst_keeps_prose_drops_markup(self):
        rst = "\n".join([
            "Title", "=====", "",
            "This driver talks to the :c:func:`foo_probe <foo>` hook and uses ``struct bar`` to keep state.",
            "", ".. note::", "", "   A directive body that must go.", "",
            "Example::", "", "    int x = f(1);", "    return x;", "",
            "+-----+-----+", "| a   | b   |", "+-----+-----+", "",
            "See `the docs <https://example.org>`_ for more about **this** device.",
        ])
        paras = build.strip_rst(rst)
        text = "\n".join(paras)
        self.assertIn("This driver talks to the foo_probe hook and uses struct bar to keep state.", text)
        self.assertIn("See the docs for more about this device.", text)
        for gone in ("directive body", "int x", "=====", "| a", ".. note", "https://"):
            self.assertNotIn(gone, text)

    def test_brown_detokenizer(self):
        toks = "The/at jury/nn said/vbd ``/`` no/at ''/'' ,/, and/cc Atlanta's/np$ mayor/nn agreed/vbd ./.".split()
        self.assertEqual(build._brown_detok(toks), 'The jury said "no", and Atlanta\'s mayor agreed.')

    def test_reflow_and_prose_filter(self):
        self.assertEqual(build.reflow("a b\nc\n\n\n d  e \n"), ["a b c", "d e"])
        self.assertTrue(build.prose_ok("This is an ordinary English sentence about nothing."))
        self.assertFalse(build.prose_ok("0x1f 0x2e {}; [] == != 1234 5678 ->> 99 %% $$"))

    def test_near_duplicates_share_a_key(self):
        self.assertEqual(build.near_key("Hello,  World!"), build.near_key("hello world"))
        self.assertNotEqual(build.near_key("hello world"), build.near_key("hello word"))

    def test_split_is_deterministic_and_fractional(self):
        got = [build.split_of("src", f"doc{i}", 0.1, 0.1) for i in range(2000)]
        self.assertEqual(got, [build.split_of("src", f"doc{i}", 0.1, 0.1) for i in range(2000)])
        for sp in ("val", "heldout"):
            self.assertTrue(120 < got.count(sp) < 280, (sp, got.count(sp)))


class PasskeyAndSchedule(unittest.TestCase):
    def test_passkey_text_is_the_standard_task(self):
        rng = random.Random(5)
        for _ in range(50):
            n = rng.randint(1, 40)
            t = train.passkey_text(rng, n)
            key = t.rsplit(" ", 1)[1].rstrip(".")
            self.assertTrue(t.startswith(train.PASSKEY_INTRO))
            self.assertTrue(t.endswith(f"What is the pass key? The pass key is {key}."))
            self.assertIn(f"The pass key is {key}. Remember it. {key} is the pass key.", t)
            self.assertEqual(t.count(train.PASSKEY_FILLER), n)
            self.assertEqual(len(key), 5)

    def test_lr_schedule(self):
        a = argparse.Namespace(lr=1e-3, warmup=0.1, min_lr_frac=0.1)
        self.assertLess(train.lr_at(0.0, a), 1e-5)
        self.assertAlmostEqual(train.lr_at(0.1, a), 1e-3, places=9)
        self.assertAlmostEqual(train.lr_at(1.0, a), 1e-4, places=9)
        vals = [train.lr_at(p / 100, a) for p in range(10, 101)]
        self.assertTrue(all(x >= y for x, y in zip(vals, vals[1:])))


@unittest.skipIf(shutil.which("spm_train") is None, "spm_train not installed")
class TokenizerAndBatches(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.td = tempfile.mkdtemp()
        rng = random.Random(0)
        words = "the a of and to in is was he she it that with for as on by at from king river house light".split()
        with open(os.path.join(cls.td, "train.txt"), "w") as f:
            for _ in range(3000):
                f.write(" ".join(rng.choice(words) for _ in range(rng.randint(5, 30))).capitalize() + ".\n")
        cls.model = os.path.join(cls.td, "tok")
        r = subprocess.run([sys.executable, os.path.join(MODELS, "train_tokenizer.py"), "--corpus", cls.td,
                            "--vocab", "400", "--out", cls.model, "--sentences", "3000"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert r.returncode == 0, r.stdout
        import sentencepiece as spm
        cls.sp = spm.SentencePieceProcessor(model_file=cls.model + ".model")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.td, ignore_errors=True)

    def test_byte_fallback_and_identity_normalization(self):
        sp = self.sp
        for s in ["\u00e9t\u00e9 \u2014 \u00fcber", "two  spaces", "\uff21 full-width"]:
            self.assertEqual(sp.decode(sp.encode(s)), s)  # no NFKC, no whitespace squeezing, no <unk>
        self.assertNotIn(sp.unk_id(), sp.encode("\u4e2d\u6587"))

    def test_rows_have_fixed_length_and_passkeys(self):
        import numpy as np
        stream = np.array(self.sp.encode(" ".join(["the king was in the house"] * 2000)), dtype=np.uint16)
        b = train.Batcher(self.sp, stream, 256, passkey_frac=1.0, seed=3)
        x, y = b.batch(6)
        self.assertEqual(tuple(x.shape), (6, 256))
        self.assertTrue(bool((x[:, 1:] == y[:, :-1]).all()))
        for row in x.tolist():
            text = self.sp.decode(row)
            self.assertIn("The pass key is", text)
            self.assertEqual(row[0], self.sp.bos_id())


if __name__ == "__main__":
    unittest.main()
