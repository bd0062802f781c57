#!/usr/bin/python3
"""Train the default model's SentencePiece BPE tokenizer with Debian's `spm_train`.

Settings follow what the engine and llama.cpp both decode identically for SentencePiece BPE:
byte fallback on (no <unk> for unseen characters), identity normalization (no NFKC rewriting),
a dummy prefix space, and extra whitespace kept (code and poems keep their spacing).

  /usr/bin/python3 models/train_tokenizer.py [--vocab 8192] [--corpus models/work/corpus]
      writes models/work/tokenizer.model (+ .vocab)
  /usr/bin/python3 models/train_tokenizer.py --measure 4096,8192,16384
      trains each size on the training split, reports tokens per character on the validation split
      and the share of a model's parameters spent on embeddings, and writes tokenizer-sizes.json.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
WORK = os.path.join(HERE, "work")


def fail(msg):
    print(f"train_tokenizer: {msg}", file=sys.stderr)
    sys.exit(2)


def spm_train(txt, prefix, vocab, sentence_size, threads):
    """Run spm_train; returns the .model path. Raises SystemExit with spm's message on failure."""
    if shutil.which("spm_train") is None:
        fail("spm_train not found (apt-get install sentencepiece)")
    cmd = ["spm_train", f"--input={txt}", f"--model_prefix={prefix}", f"--vocab_size={vocab}",
           "--model_type=bpe", "--byte_fallback=true", "--normalization_rule_name=identity",
           "--add_dummy_prefix=true", "--remove_extra_whitespaces=false", "--split_digits=true",
           "--character_coverage=0.9995", f"--input_sentence_size={sentence_size}",
           "--shuffle_input_sentence=true", "--max_sentence_length=16384", f"--num_threads={threads}",
           "--unk_id=0", "--bos_id=1", "--eos_id=2", "--pad_id=-1", "--minloglevel=1"]
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        fail(f"spm_train failed (vocab {vocab}):\n{r.stdout[-3000:]}")
    return prefix + ".model"


def val_text(corpus):
    path = os.path.join(corpus, "val.jsonl")
    if not os.path.exists(path):
        fail(f"{path} missing: build the corpus first (/usr/bin/python3 models/corpus/build.py)")
    with open(path, encoding="utf-8") as f:
        return [json.loads(l)["text"] for l in f]


def tokens_per_char(model, texts):
    import sentencepiece as spm
    sp = spm.SentencePieceProcessor(model_file=model)
    n_tok = sum(len(sp.encode(t)) for t in texts)
    n_chr = sum(len(t) for t in texts)
    return n_tok / n_chr


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default=os.path.join(WORK, "corpus"))
    ap.add_argument("--vocab", type=int, default=4096, help="4096: measured in models/README.md")
    ap.add_argument("--out", default=os.path.join(WORK, "tokenizer"), help="model prefix")
    ap.add_argument("--sentences", type=int, default=600000, help="paragraphs sampled by spm_train")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--measure", default="", help="comma-separated vocab sizes to compare")
    ap.add_argument("--dim", type=int, default=256, help="model width for the embedding-share report")
    ap.add_argument("--body-params", type=float, default=5e6,
                    help="non-embedding parameters of the planned model, for the share report")
    args = ap.parse_args()
    txt = os.path.join(args.corpus, "train.txt")
    if not os.path.exists(txt) or os.path.getsize(txt) == 0:
        fail(f"{txt} missing or empty: build the corpus first (/usr/bin/python3 models/corpus/build.py)")
    if args.vocab < 300:
        fail("--vocab must be at least 300 (256 byte pieces + specials + merges)")

    if args.measure:
        texts = val_text(args.corpus)
        rows = []
        with tempfile.TemporaryDirectory() as td:
            for v in [int(x) for x in args.measure.split(",")]:
                m = spm_train(txt, os.path.join(td, f"sp{v}"), v, args.sentences, args.threads)
                tpc = tokens_per_char(m, texts)
                emb = v * args.dim  # tied embedding: one (vocab, dim) matrix, also the output head
                share = emb / (emb + args.body_params)
                rows.append({"vocab": v, "val_tokens_per_char": round(tpc, 4),
                             "embedding_params_tied_dim%d" % args.dim: emb,
                             "embedding_share": round(share, 3)})
                print(f"vocab {v:6d}: {tpc:.4f} tokens/char on validation, embeddings {emb/1e6:.2f}M "
                      f"= {share:.0%} of a {args.body_params/1e6:.1f}M-body model", flush=True)
        os.makedirs(WORK, exist_ok=True)
        with open(os.path.join(WORK, "tokenizer-sizes.json"), "w") as f:
            json.dump(rows, f, indent=1)
        return

    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    m = spm_train(txt, args.out, args.vocab, args.sentences, args.threads)
    try:
        texts = val_text(args.corpus)
        print(f"wrote {m}: vocab {args.vocab}, {tokens_per_char(m, texts):.4f} tokens/char on validation")
    except SystemExit:
        print(f"wrote {m}: vocab {args.vocab}")


if __name__ == "__main__":
    main()
