"""ggml tensor types in numpy: F32, F16, Q8_0, Q4_0, bit-identical to ggml's reference quantizers.

Block layouts (byte-identical to ggml, little-endian):
  block_q8_0 = { f16 d; int8  qs[32]; }  34 bytes, x[j] = qs[j] * d
  block_q4_0 = { f16 d; uint8 qs[16]; }  18 bytes, low nibble of qs[j] = element j, high nibble = element j+16,
                                                   x = (nibble - 8) * d
Rounding follows ggml's quantize_row_*_ref exactly: all arithmetic in float32, d computed in float32 and
stored as IEEE half (round-to-nearest-even); Q8_0 rounds half away from zero (C roundf), Q4_0 truncates
x/d + 8.5 toward zero and clamps to 15.
"""
from __future__ import annotations

import numpy as np

# GGML type ids as stored in GGUF tensor infos.
GGML_TYPE_F32 = 0
GGML_TYPE_F16 = 1
GGML_TYPE_Q4_0 = 2
GGML_TYPE_Q8_0 = 8

QK = 32  # block size of Q4_0 and Q8_0

# type id -> (elements per block, bytes per block)
TYPE_TRAITS = {
    GGML_TYPE_F32: (1, 4),
    GGML_TYPE_F16: (1, 2),
    GGML_TYPE_Q4_0: (QK, 18),
    GGML_TYPE_Q8_0: (QK, 34),
}

TYPE_NAMES = {GGML_TYPE_F32: "F32", GGML_TYPE_F16: "F16", GGML_TYPE_Q4_0: "Q4_0", GGML_TYPE_Q8_0: "Q8_0"}

Q8_0_DTYPE = np.dtype([("d", "<f2"), ("qs", "i1", (QK,))])
Q4_0_DTYPE = np.dtype([("d", "<f2"), ("qs", "u1", (QK // 2,))])
assert Q8_0_DTYPE.itemsize == 34 and Q4_0_DTYPE.itemsize == 18


def nbytes(ggml_type: int, n_elements: int) -> int:
    """Bytes taken by n_elements of a type; raises ValueError if n is not a whole number of blocks."""
    if ggml_type not in TYPE_TRAITS:
        raise ValueError(f"unsupported ggml type {ggml_type}")
    blk, size = TYPE_TRAITS[ggml_type]
    if n_elements % blk:
        raise ValueError(f"{n_elements} elements is not a multiple of the {TYPE_NAMES[ggml_type]} block ({blk})")
    return n_elements // blk * size


def _blocks(x) -> np.ndarray:
    x = np.ascontiguousarray(np.asarray(x, dtype=np.float32)).reshape(-1)
    if x.size % QK:
        raise ValueError(f"{x.size} elements is not a multiple of {QK}")
    return x.reshape(-1, QK)


def _roundf(x: np.ndarray) -> np.ndarray:
    """C roundf on float32: nearest integer, halves away from zero (np.round would round halves to even).

    x - trunc(x) is exact in float32, so the tie test is exact (floor(|x| + 0.5) is not: 0.49999997 + 0.5
    rounds up to 1.0 in float32)."""
    t = np.trunc(x)
    frac = np.abs(x - t)
    return t + np.sign(x) * (frac >= np.float32(0.5))


def _inverse(d: np.ndarray) -> np.ndarray:
    """ggml's `id = d ? 1.0f/d : 0.0f` in float32."""
    out = np.zeros_like(d)
    nz = d != 0
    out[nz] = np.float32(1.0) / d[nz]
    return out


def quantize_q8_0(x) -> bytes:
    """float array (size % 32 == 0, row-major) -> Q8_0 bytes, as ggml's quantize_row_q8_0_ref."""
    xb = _blocks(x)
    amax = np.max(np.abs(xb), axis=1)
    d = (amax / np.float32(127.0)).astype(np.float32)
    idv = _inverse(d)
    q = _roundf((xb * idv[:, None]).astype(np.float32))
    out = np.empty(xb.shape[0], dtype=Q8_0_DTYPE)
    out["d"] = d.astype(np.float16)
    out["qs"] = q.astype(np.int8)
    return out.tobytes()


def dequantize_q8_0(buf, n: int) -> np.ndarray:
    """Q8_0 bytes -> n float32 (qs * float(d))."""
    blk = np.frombuffer(buf, dtype=Q8_0_DTYPE, count=n // QK)
    d = blk["d"].astype(np.float32)
    return (blk["qs"].astype(np.float32) * d[:, None]).reshape(-1)


def quantize_q4_0(x) -> bytes:
    """float array (size % 32 == 0) -> Q4_0 bytes, as ggml's quantize_row_q4_0_ref.

    d = (the element of largest magnitude, sign kept, first one on ties) / -8; q = min(15, trunc(x/d + 8.5))."""
    xb = _blocks(x)
    idx = np.argmax(np.abs(xb), axis=1)  # first occurrence, like ggml's strict `amax < fabsf(v)`
    mx = xb[np.arange(xb.shape[0]), idx]
    d = (mx / np.float32(-8.0)).astype(np.float32)
    idv = _inverse(d)
    v = (xb * idv[:, None]).astype(np.float32) + np.float32(8.5)
    q = np.minimum(np.trunc(v), 15).astype(np.uint8)
    out = np.empty(xb.shape[0], dtype=Q4_0_DTYPE)
    out["d"] = d.astype(np.float16)
    out["qs"] = q[:, : QK // 2] | (q[:, QK // 2:] << 4)
    return out.tobytes()


def dequantize_q4_0(buf, n: int) -> np.ndarray:
    """Q4_0 bytes -> n float32 ((nibble - 8) * float(d))."""
    blk = np.frombuffer(buf, dtype=Q4_0_DTYPE, count=n // QK)
    d = blk["d"].astype(np.float32)
    lo = (blk["qs"] & 0x0F).astype(np.int16) - 8
    hi = (blk["qs"] >> 4).astype(np.int16) - 8
    q = np.concatenate([lo, hi], axis=1).astype(np.float32)
    return (q * d[:, None]).reshape(-1)


def quantize(ggml_type: int, x) -> bytes:
    """float array -> bytes of `ggml_type` (row-major, same element order)."""
    x = np.asarray(x, dtype=np.float32)
    if ggml_type == GGML_TYPE_F32:
        return np.ascontiguousarray(x, dtype="<f4").tobytes()
    if ggml_type == GGML_TYPE_F16:
        return np.ascontiguousarray(x).astype("<f2").tobytes()
    if ggml_type == GGML_TYPE_Q8_0:
        return quantize_q8_0(x)
    if ggml_type == GGML_TYPE_Q4_0:
        return quantize_q4_0(x)
    raise ValueError(f"unsupported ggml type {ggml_type}")


def dequantize(ggml_type: int, buf, n: int) -> np.ndarray:
    """bytes of `ggml_type` -> n float32 values (flat)."""
    if len(buf) < nbytes(ggml_type, n):
        raise ValueError("buffer too short for tensor")
    if ggml_type == GGML_TYPE_F32:
        return np.frombuffer(buf, dtype="<f4", count=n).astype(np.float32)
    if ggml_type == GGML_TYPE_F16:
        return np.frombuffer(buf, dtype="<f2", count=n).astype(np.float32)
    if ggml_type == GGML_TYPE_Q8_0:
        return dequantize_q8_0(buf, n)
    if ggml_type == GGML_TYPE_Q4_0:
        return dequantize_q4_0(buf, n)
    raise ValueError(f"unsupported ggml type {ggml_type}")
