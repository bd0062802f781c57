#!/usr/bin/python3
"""Random-weight llama GGUFs for benchmarks (not committed; `make bench` builds them under build/bench/).

    make_random.py SIZE OUT.gguf [FTYPE]     SIZE: 25m | 110m; FTYPE default q8_0

The tokenizer is the tiny fixture's, padded with unused pieces to the vocabulary size: enough to load and run."""
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from edgeinf_ref.export import export_gguf  # noqa: E402
from edgeinf_ref.llama import Llama, LlamaConfig  # noqa: E402

SIZES = {
    # ~25M parameters: 8K vocab, 12 layers of dim 384
    "25m": dict(vocab_size=8000, dim=384, n_layers=12, n_heads=6, n_kv_heads=2, ffn_dim=1024, max_seq_len=2048),
    # ~110M parameters: 32K vocab, 12 layers of dim 768 (GPT-2-small / TinyLlama-ish shapes)
    "110m": dict(vocab_size=32000, dim=768, n_layers=12, n_heads=12, n_kv_heads=4, ffn_dim=2048, max_seq_len=2048),
}


def main():
    size, out = sys.argv[1], sys.argv[2]
    ftype = sys.argv[3] if len(sys.argv) > 3 else "q8_0"
    cfg = LlamaConfig(**SIZES[size])
    torch.manual_seed(0)
    model = Llama(cfg)
    n = sum(p.numel() for p in model.parameters())
    tok = os.path.join(os.path.dirname(os.path.dirname(HERE)), "tests", "fixtures", "tiny", "tokenizer.model")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    export_gguf(model, cfg, out, tokenizer_model=tok, ftype=ftype, name=f"random-{size}")
    print(f"{out}: {n / 1e6:.1f}M parameters, {os.path.getsize(out) / 1e6:.1f} MB ({ftype})")


if __name__ == "__main__":
    main()
