"""Model <-> GGUF: export a reference Llama (+ its sentencepiece tokenizer) as a llama.cpp `llama`-arch GGUF,
and load any such GGUF back into a reference Llama (dequantized weights) to compute reference outputs.

Tensor naming and layout follow llama.cpp (see GGUF_NAMES). Matrices are stored row-major as PyTorch's
(out, in), i.e. GGUF ne = [in, out]. RoPE is trained in llama.cpp's adjacent-pair convention, so Q/K are
written as they are (no permutation). Norm weights are always F32; every matrix, token_embd included, takes
the file type (a row whose length is not a multiple of 32 falls back to F32 for the block types).
"""
from __future__ import annotations

import struct
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch

from . import quant
from .gguf import GGUFFile, GGUFWriter, T, read_gguf
from .llama import Llama, LlamaConfig

# ftype name -> (general.file_type as llama.cpp's LLAMA_FTYPE_*, ggml type of the matrices)
FTYPES = {
    "f32": (0, quant.GGML_TYPE_F32),
    "f16": (1, quant.GGML_TYPE_F16),
    "q4_0": (2, quant.GGML_TYPE_Q4_0),
    "q8_0": (7, quant.GGML_TYPE_Q8_0),
}

# A plain-text chat format (the tiny default models have no special chat tokens). Jinja, as llama.cpp expects
# in tokenizer.chat_template. Rendered, a conversation reads:
#     <system text>\n\n            (only if a system message is given)
#     User: <text>\n
#     Assistant: <text>\n
#     ...
#     Assistant:                  (when add_generation_prompt: the model writes the reply after this)
# BOS is added by the tokenizer (add_bos_token = true), not by the template.
DEFAULT_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ message['content'] }}\n\n"
    "{% elif message['role'] == 'user' %}User: {{ message['content'] }}\n"
    "{% else %}Assistant: {{ message['content'] }}\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}Assistant:{% endif %}"
)


def gguf_names(n_layers: int, tied: bool) -> List[Tuple[str, str]]:
    """[(GGUF tensor name, reference state_dict key)] in file order."""
    out = [("token_embd.weight", "tok_embeddings.weight"), ("output_norm.weight", "norm.weight")]
    if not tied:
        out.append(("output.weight", "output.weight"))
    for i in range(n_layers):
        p = f"layers.{i}."
        out += [
            (f"blk.{i}.attn_norm.weight", p + "attention_norm.weight"),
            (f"blk.{i}.attn_q.weight", p + "attention.wq.weight"),
            (f"blk.{i}.attn_k.weight", p + "attention.wk.weight"),
            (f"blk.{i}.attn_v.weight", p + "attention.wv.weight"),
            (f"blk.{i}.attn_output.weight", p + "attention.wo.weight"),
            (f"blk.{i}.ffn_norm.weight", p + "ffn_norm.weight"),
            (f"blk.{i}.ffn_gate.weight", p + "feed_forward.w1.weight"),
            (f"blk.{i}.ffn_up.weight", p + "feed_forward.w3.weight"),
            (f"blk.{i}.ffn_down.weight", p + "feed_forward.w2.weight"),
        ]
    return out


# ----------------------------------------------------------------------------------------------------------
# sentencepiece .model (a protobuf; parsed by hand because python3-protobuf is not installed)
# ----------------------------------------------------------------------------------------------------------

def _pb_fields(buf: bytes):
    """Yield (field number, wire type, value) of one protobuf message; value is int or bytes."""
    pos, n = 0, len(buf)

    def varint():
        nonlocal pos
        shift = result = 0
        while True:
            if pos >= n:
                raise ValueError("truncated protobuf varint")
            b = buf[pos]
            pos += 1
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result
            shift += 7

    while pos < n:
        key = varint()
        field, wt = key >> 3, key & 7
        if wt == 0:
            yield field, wt, varint()
        elif wt == 1:
            yield field, wt, buf[pos:pos + 8]
            pos += 8
        elif wt == 2:
            ln = varint()
            yield field, wt, buf[pos:pos + ln]
            pos += ln
        elif wt == 5:
            yield field, wt, buf[pos:pos + 4]
            pos += 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wt}")


def read_spm_model(path: str) -> Dict:
    """The fields of a sentencepiece ModelProto we need: pieces [(piece, score, type)], model_type
    (1 unigram, 2 bpe, 3 word, 4 char), add_dummy_prefix, remove_extra_whitespaces, byte_fallback."""
    with open(path, "rb") as f:
        data = f.read()
    out = {"pieces": [], "model_type": 1, "add_dummy_prefix": True, "remove_extra_whitespaces": True,
           "byte_fallback": False}
    for field, wt, val in _pb_fields(data):
        if field == 1 and wt == 2:          # SentencePiece pieces
            piece, score, ptype = "", 0.0, 1
            for f2, w2, v2 in _pb_fields(val):
                if f2 == 1 and w2 == 2:
                    piece = v2.decode("utf-8")
                elif f2 == 2 and w2 == 5:
                    score = struct.unpack("<f", v2)[0]
                elif f2 == 3 and w2 == 0:
                    ptype = v2
            out["pieces"].append((piece, score, ptype))
        elif field == 2 and wt == 2:        # TrainerSpec
            for f2, w2, v2 in _pb_fields(val):
                if f2 == 3 and w2 == 0:
                    out["model_type"] = v2
                elif f2 == 35 and w2 == 0:
                    out["byte_fallback"] = bool(v2)
        elif field == 3 and wt == 2:        # NormalizerSpec
            for f2, w2, v2 in _pb_fields(val):
                if f2 == 3 and w2 == 0:
                    out["add_dummy_prefix"] = bool(v2)
                elif f2 == 4 and w2 == 0:
                    out["remove_extra_whitespaces"] = bool(v2)
    return out


# GGUF token types (llama.cpp LLAMA_TOKEN_TYPE_*); they equal sentencepiece's piece types.
TOKEN_NORMAL, TOKEN_UNKNOWN, TOKEN_CONTROL, TOKEN_USER_DEFINED, TOKEN_UNUSED, TOKEN_BYTE = 1, 2, 3, 4, 5, 6


def tokenizer_metadata(tokenizer_model: str, vocab_size: int) -> List[Tuple[str, object, int, Optional[int]]]:
    """GGUF tokenizer keys [(key, value, vtype, elem_type)] for a sentencepiece .model.

    Pieces, scores and types come from the sentencepiece library; user-defined pieces (which the library does not
    flag) are recognised from the model proto. If the model's vocab is larger than the tokenizer's (padded
    embedding), the extra ids become UNUSED pieces "<unused_N>" so the token list matches token_embd."""
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=tokenizer_model)
    proto = read_spm_model(tokenizer_model)
    n = sp.get_piece_size()
    if vocab_size < n:
        raise ValueError(f"model vocab {vocab_size} smaller than the tokenizer's {n}")
    tokens, scores, types = [], [], []
    for i in range(n):
        tokens.append(sp.id_to_piece(i))
        scores.append(sp.get_score(i))
        if sp.is_control(i):
            t = TOKEN_CONTROL
        elif sp.is_unknown(i):
            t = TOKEN_UNKNOWN
        elif sp.is_byte(i):
            t = TOKEN_BYTE
        elif sp.is_unused(i):
            t = TOKEN_UNUSED
        elif proto["pieces"][i][2] == TOKEN_USER_DEFINED:
            t = TOKEN_USER_DEFINED
        else:
            t = TOKEN_NORMAL
        types.append(t)
    for i in range(n, vocab_size):
        tokens.append(f"<unused_{i}>")
        scores.append(0.0)
        types.append(TOKEN_UNUSED)
    algo = {1: "unigram", 2: "bpe"}.get(proto["model_type"])
    if algo is None:
        raise ValueError(f"sentencepiece model type {proto['model_type']} (word/char) not supported")
    kv = [
        ("tokenizer.ggml.model", "llama", T.STRING, None),
        ("tokenizer.ggml.tokens", tokens, T.ARRAY, T.STRING),
        ("tokenizer.ggml.scores", np.array(scores, dtype=np.float32), T.ARRAY, T.FLOAT32),
        ("tokenizer.ggml.token_type", np.array(types, dtype=np.int32), T.ARRAY, T.INT32),
    ]
    for key, tid in (("bos", sp.bos_id()), ("eos", sp.eos_id()), ("unknown", sp.unk_id()),
                     ("padding", sp.pad_id())):
        if tid >= 0:
            kv.append((f"tokenizer.ggml.{key}_token_id", tid, T.UINT32, None))
    kv += [
        ("tokenizer.ggml.add_bos_token", True, T.BOOL, None),
        ("tokenizer.ggml.add_eos_token", False, T.BOOL, None),
        # llama.cpp's own key for sentencepiece's add_dummy_prefix, so other runtimes tokenize alike.
        ("tokenizer.ggml.add_space_prefix", proto["add_dummy_prefix"], T.BOOL, None),
        ("edgeinf.tokenizer.algorithm", algo, T.STRING, None),
        ("edgeinf.tokenizer.add_dummy_prefix", proto["add_dummy_prefix"], T.BOOL, None),
        ("edgeinf.tokenizer.remove_extra_whitespaces", proto["remove_extra_whitespaces"], T.BOOL, None),
        ("edgeinf.tokenizer.byte_fallback", proto["byte_fallback"], T.BOOL, None),
    ]
    return kv


# ----------------------------------------------------------------------------------------------------------
# Export
# ----------------------------------------------------------------------------------------------------------

def _unwrap(model):
    """The plain Llama inside torch.compile / DataParallel wrappers."""
    m = getattr(model, "_orig_mod", model)
    return getattr(m, "module", m)


def model_state(model) -> Dict[str, np.ndarray]:
    """Reference state_dict as float32 numpy arrays on the CPU."""
    sd = _unwrap(model).state_dict()
    return {k: v.detach().to("cpu", torch.float32).numpy() for k, v in sd.items()}


def export_gguf(model, cfg: LlamaConfig, path: str, tokenizer_model: Optional[str] = None, ftype: str = "f32",
                name: str = "edgeinf", chat_template: Optional[str] = DEFAULT_CHAT_TEMPLATE,
                extra_metadata: Optional[List[Tuple[str, object, int, Optional[int]]]] = None) -> Dict[str, int]:
    """Write `model` (a reference Llama with config `cfg`) to `path` as a llama-arch GGUF of type `ftype`.

    tokenizer_model: the sentencepiece .model whose vocabulary goes into tokenizer.ggml.* (None: no tokenizer
    keys, the file then only serves weight tests). extra_metadata: more (key, value, vtype, elem_type) entries.
    Returns {tensor name: ggml type} of what was written."""
    if ftype not in FTYPES:
        raise ValueError(f"ftype {ftype!r} not in {sorted(FTYPES)}")
    file_type, mat_type = FTYPES[ftype]
    state = model_state(model)
    if cfg.tie_embeddings != ("output.weight" not in state):
        raise ValueError("cfg.tie_embeddings does not match the model (output.weight presence)")

    w = GGUFWriter()
    w.add("general.architecture", "llama", T.STRING)
    w.add("general.name", name, T.STRING)
    w.add("general.file_type", file_type, T.UINT32)
    if mat_type in (quant.GGML_TYPE_Q4_0, quant.GGML_TYPE_Q8_0):
        w.add("general.quantization_version", 2, T.UINT32)
    w.add("llama.context_length", cfg.max_seq_len, T.UINT32)
    w.add("llama.embedding_length", cfg.dim, T.UINT32)
    w.add("llama.block_count", cfg.n_layers, T.UINT32)
    w.add("llama.feed_forward_length", cfg.ffn_dim, T.UINT32)
    w.add("llama.attention.head_count", cfg.n_heads, T.UINT32)
    w.add("llama.attention.head_count_kv", cfg.n_kv_heads, T.UINT32)
    w.add("llama.attention.layer_norm_rms_epsilon", float(cfg.norm_eps), T.FLOAT32)
    w.add("llama.rope.freq_base", float(cfg.rope_theta), T.FLOAT32)
    w.add("llama.rope.dimension_count", cfg.head_dim, T.UINT32)
    w.add("llama.vocab_size", cfg.vocab_size, T.UINT32)
    if tokenizer_model is not None:
        for key, val, vt, et in tokenizer_metadata(tokenizer_model, cfg.vocab_size):
            w.add(key, val, vt, et)
        if chat_template:
            w.add("tokenizer.chat_template", chat_template, T.STRING)
    for key, val, vt, et in (extra_metadata or []):
        w.add(key, val, vt, et)

    written = {}
    for gname, key in gguf_names(cfg.n_layers, cfg.tie_embeddings):
        arr = state[key]
        t = quant.GGML_TYPE_F32
        if arr.ndim == 2:
            t = mat_type
            blk = quant.TYPE_TRAITS[t][0]
            if arr.shape[1] % blk:
                t = quant.GGML_TYPE_F32
        w.add_tensor_array(gname, arr, t)
        written[gname] = t
    w.write(path)
    return written


# ----------------------------------------------------------------------------------------------------------
# Load (reference forward of any llama-arch GGUF we support)
# ----------------------------------------------------------------------------------------------------------

def config_from_gguf(g: GGUFFile) -> LlamaConfig:
    if g.get("general.architecture") != "llama":
        raise ValueError(f"architecture {g.get('general.architecture')!r} is not llama")
    emb = g.tensors["token_embd.weight"]
    dim, n_heads = int(g.get("llama.embedding_length")), int(g.get("llama.attention.head_count"))
    cfg = LlamaConfig(
        vocab_size=int(emb.ne[1]),
        dim=dim,
        n_layers=int(g.get("llama.block_count")),
        n_heads=n_heads,
        n_kv_heads=int(g.get("llama.attention.head_count_kv", n_heads)),
        ffn_dim=int(g.get("llama.feed_forward_length")),
        max_seq_len=int(g.get("llama.context_length")),
        rope_theta=float(g.get("llama.rope.freq_base", 10000.0)),
        norm_eps=float(g.get("llama.attention.layer_norm_rms_epsilon")),
        tie_embeddings="output.weight" not in g.tensors,
    )
    rd = g.get("llama.rope.dimension_count", cfg.head_dim)
    if rd != cfg.head_dim:
        raise ValueError(f"partial RoPE (dimension_count {rd} != head_dim {cfg.head_dim}) not supported")
    return cfg


def load_gguf(path_or_file, dtype=torch.float32) -> Tuple[Llama, LlamaConfig, GGUFFile]:
    """A reference Llama holding the file's (dequantized) weights, in eval mode, as `dtype`."""
    g = path_or_file if isinstance(path_or_file, GGUFFile) else read_gguf(path_or_file)
    cfg = config_from_gguf(g)
    model = Llama(cfg)
    sd = {}
    for gname, key in gguf_names(cfg.n_layers, cfg.tie_embeddings):
        if gname not in g.tensors:
            raise ValueError(f"tensor {gname} missing")
        arr = g.tensor(gname)
        sd[key] = torch.from_numpy(arr.copy())
    model.load_state_dict(sd, strict=True)
    return model.to(dtype).eval(), cfg, g
