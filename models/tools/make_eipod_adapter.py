#!/usr/bin/python3
"""Combine an EdgeInfinite adapter and a PoD adapter of the same base model into one `edgeinfinite+pod` adapter
(docs/pod.md): every key and tensor of the EdgeInfinite adapter plus the PoD keys (blocks, share mode, n_recent).

  /usr/bin/python3 models/tools/make_eipod_adapter.py --model models/edgeinf-default-q8_0.gguf \\
      --ei models/edgeinf-default-adapter.gguf --pod models/edgeinf-default-pod.gguf --out OUT.gguf [--n-recent N]

Both must match the model (layers, heads, dims); the PoD n_sink must equal the EdgeInfinite one and n_recent must not
exceed its window (every evicted token is then distant). --n-recent overrides the PoD adapter's value (e.g. to fit a
smaller EdgeInfinite window). The result is read back and checked before the command succeeds.
"""
import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from edgeinf_ref.adapter import load_adapter_gguf  # noqa: E402
from edgeinf_ref.export import load_gguf  # noqa: E402
from edgeinf_ref.pod import load_pod_gguf  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--ei", required=True, help="kind 'edgeinfinite' adapter")
    ap.add_argument("--pod", required=True, help="kind 'pod' adapter (models/pod_calibrate.py)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--n-recent", type=int, default=0)
    a = ap.parse_args()
    try:
        cfg = load_gguf(a.model)[1]
        ei = load_adapter_gguf(a.ei, cfg)
        pod, _ = load_pod_gguf(a.pod, cfg)
        if a.n_recent:
            pod.n_recent = a.n_recent
        pod.save_gguf(a.out, ei_adapter=ei, name="edgeinf-eipod-adapter")
        pod2, ei2 = load_pod_gguf(a.out, cfg)
    except (ValueError, OSError) as e:
        print(f"make_eipod_adapter: {e}", file=sys.stderr)
        return 2
    if ei2 is None or pod2.block_starts != pod.block_starts or pod2.n_recent != pod.n_recent:
        print("make_eipod_adapter: the written adapter does not read back the same", file=sys.stderr)
        return 1
    print(f"wrote {a.out}: edgeinfinite+pod, blocks from {pod.block_starts}, share {pod.share}, n_sink {pod.n_sink}, "
          f"n_recent {pod.n_recent}, window {ei.window}, seg {ei.seg}, rank {ei.rank}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
