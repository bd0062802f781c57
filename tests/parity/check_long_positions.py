#!/usr/bin/python3
"""Positions at 1M tokens (DESIGN §3.3: an fp32 RoPE angle p·θ is off by ~0.06 rad at p = 1e6).

A periodic input whose period equals the segment size makes a streaming session's visible context (sink + window, at
the same cache slots) identical at every segment phase once evictions are in steady state. So the logits after 384
tokens and after 1,048,576 tokens of the same pattern must agree up to float rounding — unless positions lose
precision far out. Run on the optimised build (1M tokens). Ends with "N passed, N failed".

    check_long_positions.py TOOL MODEL
"""
import os
import random
import subprocess
import sys
import tempfile

import numpy as np


def last_logits(tool, model, pattern, repeat, td):
    out = os.path.join(td, f"last{repeat}.f32")
    subprocess.run([tool, "--policy", "streaming", "--sink", "4", "--window", "64", "--seg", "32", "--repeat",
                    str(repeat), "last", model, out, *map(str, pattern)], check=True)
    return np.fromfile(out, dtype="<f4").astype(np.float64)


def main():
    tool, model = sys.argv[1], sys.argv[2]
    rnd = random.Random(5)
    pattern = [1] + [rnd.randrange(3, 380) for _ in range(31)]  # 32 = the segment size
    with tempfile.TemporaryDirectory() as td:
        short = last_logits(tool, model, pattern, 12, td)       # 384 tokens
        long_ = last_logits(tool, model, pattern, 32768, td)    # 1,048,576 tokens
    d = np.abs(short - long_).max()
    ok = d <= 1e-3 and short.argmax() == long_.argmax()
    print(f"{'ok' if ok else 'FAIL'} logits after 384 vs 1,048,576 periodic tokens (streaming): max|d| = {d:.3g} "
          f"(tol 1e-3; logit std {short.std():.3g})")
    print(f"{int(ok)} passed, {int(not ok)} failed")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
