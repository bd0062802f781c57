"""A sentencepiece tokenizer rebuilt from a GGUF's `tokenizer.ggml.*` vocabulary (llama / SPM style).

Training scripts that take "any Llama GGUF the engine loads" need the model's tokenizer in Python; the GGUF holds
the pieces, scores and types, so a sentencepiece ModelProto is serialised from them by hand (python3-protobuf is
not installed) and handed to the sentencepiece library. Fields written (sentencepiece_model.proto):
  ModelProto     1: pieces {1 piece, 2 score, 3 type}, 2: trainer_spec, 3: normalizer_spec
  TrainerSpec    3 model_type (1 unigram, 2 bpe), 35 byte_fallback, 40-43 unk/bos/eos/pad ids
  NormalizerSpec 1 name ("identity"), 3 add_dummy_prefix, 4 remove_extra_whitespaces, 5 escape_whitespaces
Identity normalisation is assumed (the engine's tokenizer does no NFKC either).
"""
from __future__ import annotations

import struct

from .gguf import GGUFFile


def _varint(n: int) -> bytes:
    if n < 0:
        n &= (1 << 64) - 1   # int32 fields encode negatives as 10-byte varints
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _key(field: int, wt: int) -> bytes:
    return _varint((field << 3) | wt)


def _bytes_field(field: int, data: bytes) -> bytes:
    return _key(field, 2) + _varint(len(data)) + data


def _int_field(field: int, v: int) -> bytes:
    return _key(field, 0) + _varint(int(v))


def model_proto_from_gguf(g: GGUFFile) -> bytes:
    """Serialised sentencepiece ModelProto of the GGUF's vocabulary. Raises ValueError if it has none."""
    toks = g.get("tokenizer.ggml.tokens")
    if not toks:
        raise ValueError("the GGUF has no tokenizer.ggml.tokens: pass a sentencepiece .model with --tokenizer")
    if g.get("tokenizer.ggml.model", "llama") != "llama":
        raise ValueError(f"tokenizer.ggml.model {g.get('tokenizer.ggml.model')!r} is not sentencepiece-style "
                         f"('llama'): pass a sentencepiece .model with --tokenizer")
    n = len(toks)
    scores = g.get("tokenizer.ggml.scores")
    types = g.get("tokenizer.ggml.token_type")
    out = bytearray()
    for i, piece in enumerate(toks):
        sc = float(scores[i]) if scores is not None else 0.0
        ty = int(types[i]) if types is not None else 1
        body = _bytes_field(1, piece.encode("utf-8")) + _key(2, 5) + struct.pack("<f", sc) + _int_field(3, ty)
        out += _bytes_field(1, body)
    algo = g.get("edgeinf.tokenizer.algorithm", "bpe")
    mtype = {"unigram": 1, "bpe": 2}.get(algo)
    if mtype is None:
        raise ValueError(f"tokenizer algorithm {algo!r} not supported")
    byte_fallback = g.get("edgeinf.tokenizer.byte_fallback")
    if byte_fallback is None:
        byte_fallback = types is not None and any(int(t) == 6 for t in types)

    def tid(name, default):
        v = g.get(f"tokenizer.ggml.{name}_token_id")
        return default if v is None else int(v)
    trainer = (_int_field(3, mtype) + _int_field(4, n) + _int_field(35, int(bool(byte_fallback))) +
               _int_field(40, tid("unknown", 0)) + _int_field(41, tid("bos", -1)) + _int_field(42, tid("eos", -1)) +
               _int_field(43, tid("padding", -1)))
    out += _bytes_field(2, trainer)
    add_prefix = g.get("edgeinf.tokenizer.add_dummy_prefix", g.get("tokenizer.ggml.add_space_prefix", True))
    rm_ws = g.get("edgeinf.tokenizer.remove_extra_whitespaces", False)
    norm = (_bytes_field(1, b"identity") + _int_field(3, int(bool(add_prefix))) + _int_field(4, int(bool(rm_ws))) +
            _int_field(5, 1))
    out += _bytes_field(3, norm)
    return bytes(out)


def processor_from_gguf(g: GGUFFile):
    """A sentencepiece.SentencePieceProcessor for the GGUF's vocabulary."""
    import sentencepiece as spm
    return spm.SentencePieceProcessor(model_proto=model_proto_from_gguf(g))
