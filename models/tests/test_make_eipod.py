"""models/tools/make_eipod_adapter.py: joins an EdgeInfinite and a PoD adapter of the tiny fixture model into one
`edgeinfinite+pod` adapter that reads back with both parts, and refuses mismatches with a one-line error (exit 2)."""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.dirname(HERE))

from edgeinf_ref.export import load_gguf  # noqa: E402
from edgeinf_ref.pod import load_pod_gguf  # noqa: E402

TOOL = os.path.join(ROOT, "models", "tools", "make_eipod_adapter.py")
MODEL = os.path.join(ROOT, "tests", "fixtures", "tiny", "tiny-f32.gguf")
EI = os.path.join(ROOT, "tests", "fixtures", "tiny-ei", "tiny-ei-adapter.gguf")
POD = os.path.join(ROOT, "tests", "fixtures", "tiny-pod", "tiny-pod-keys.gguf")


def tool(*args):
    return subprocess.run([sys.executable, TOOL, *args], capture_output=True, text=True)


class MakeEiPod(unittest.TestCase):
    def test_joins_both_parts(self):
        with tempfile.TemporaryDirectory() as td:
            out = os.path.join(td, "eipod.gguf")
            r = tool("--model", MODEL, "--ei", EI, "--pod", POD, "--out", out)
            self.assertEqual(r.returncode, 0, r.stderr)
            pod, ei = load_pod_gguf(out, load_gguf(MODEL)[1])
            self.assertIsNotNone(ei)
            self.assertEqual(pod.n_recent, 16)

    def test_refusals(self):
        with tempfile.TemporaryDirectory() as td:
            out = os.path.join(td, "eipod.gguf")
            cases = [("--ei", POD, "--pod", POD),                 # a pod adapter where the EdgeInfinite one goes
                     ("--ei", EI, "--pod", EI),                   # and the reverse
                     ("--ei", EI, "--pod", POD, "--n-recent", "17")]   # n_recent beyond the EdgeInfinite window
            for c in cases:
                r = tool("--model", MODEL, *c, "--out", out)
                self.assertEqual(r.returncode, 2, (c, r.stderr))
                self.assertTrue(r.stderr.startswith("make_eipod_adapter: "), r.stderr)
                self.assertNotIn("Traceback", r.stderr)
                self.assertFalse(os.path.exists(out))


if __name__ == "__main__":
    unittest.main()
