#!/usr/bin/python3
"""How an EdgeInfinite adapter's memory holds up as the filler around a passkey grows, without running millions of
tokens: passkey rows of LENGTH tokens (key line compressed into memory by the question) are run through the
reference with every filler segment weighted by R in the compression (train_adapter.py --dilute, docs/edgeinfinite.md
"Virtual length"), so the memory is roughly that of a row R times longer. Teacher-forced, greedy: a row is right when
every answer token is the argmax.

    /usr/bin/python3 models/tools/dilution_probe.py --adapter models/edgeinf-default-adapter.gguf \
        [--model models/edgeinf-default-q8_0.gguf] [--weights 1,64,512] [--length 2048] [--rows 6]
"""
from __future__ import annotations

import argparse
import contextlib
import os
import random
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
MODELS = os.path.dirname(HERE)
sys.path.insert(0, MODELS)

import torch  # noqa: E402

from edgeinf_ref.adapter import load_adapter_gguf  # noqa: E402
from edgeinf_ref.attention import EdgeInfinitePolicy  # noqa: E402
from edgeinf_ref.export import load_gguf  # noqa: E402
from edgeinf_ref.gguf import read_gguf  # noqa: E402
from edgeinf_ref.spm_proto import processor_from_gguf  # noqa: E402
from train_adapter import Passkey, eval_passkey, key_location  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=os.path.join(MODELS, "edgeinf-default-q8_0.gguf"))
    ap.add_argument("--adapter", required=True)
    ap.add_argument("--weights", default="1,64,512", help="filler segment weights to try")
    ap.add_argument("--length", type=int, default=2048)
    ap.add_argument("--rows", type=int, default=6)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    g = read_gguf(args.model)
    model, cfg, _ = load_gguf(g, dtype=torch.float32)
    model.eval()
    sp = processor_from_gguf(g)
    ad = load_adapter_gguf(args.adapter, cfg)
    pol = EdgeInfinitePolicy(ad.n_sink, ad.window, ad.seg, ad)
    pk, rng = Passkey(sp), random.Random(args.seed)
    # keys spread over the part of the row that is in memory when the question comes
    span_end = args.length - pol.layout.budget - 2 * pol.layout.seg
    rows = [pk.row_at_token(rng, args.length, 200 + i * max(0, span_end - 200) / max(1, args.rows - 1))
            for i in range(args.rows)]
    for r in rows:
        if key_location(pol.layout, r[2], len(r[0]) - 1) != "memory":
            sys.exit(f"dilution_probe: a key line is not in memory at the question (length {args.length} too short)")
    rows = [{"ids": ids, "ans": ans, "span": span} for ids, ans, span, _ in rows]
    for w in [float(x) for x in args.weights.split(",")]:
        preds = []
        hits, _ = eval_passkey(model, pol, rows, torch.device("cpu"), contextlib.nullcontext, 1, dilute=w, preds=preds)
        digits = sum(a == b for r, p in zip(rows, preds) for a, b in zip(p, r["ans"]))
        answers = " ".join(f"{sp.decode(r['ans'])}->{sp.decode(p)}" for r, p in zip(rows, preds))
        print(f"weight {w:g} (~{w * (args.length - pol.layout.budget) / 1e3:.0f}K tokens of filler): rows {sum(hits)}/"
              f"{len(rows)}, answer tokens {digits}/{sum(len(r['ans']) for r in rows)}  [{answers}]", flush=True)


if __name__ == "__main__":
    main()
