"""GGUF writer (v3) and reader (v2, v3), independent of llama.cpp's gguf-py.

File layout (all little-endian):
    u32 magic "GGUF" | u32 version | u64 n_tensors | u64 n_kv
    n_kv x { string key | u32 value_type | value }
    n_tensors x { string name | u32 n_dims | u64 ne[n_dims] (ne0 innermost) | u32 ggml_type | u64 offset }
    zero padding to `general.alignment` (default 32)
    tensor data; each tensor's offset (relative to the data start) is a multiple of the alignment
  string = u64 length + UTF-8 bytes (no terminator)
  array  = u32 element type + u64 count + elements (arrays of arrays allowed)
"""
from __future__ import annotations

import struct
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from . import quant

GGUF_MAGIC = b"GGUF"
GGUF_VERSION = 3
DEFAULT_ALIGNMENT = 32


class T:
    """GGUF metadata value types."""
    UINT8 = 0
    INT8 = 1
    UINT16 = 2
    INT16 = 3
    UINT32 = 4
    INT32 = 5
    FLOAT32 = 6
    BOOL = 7
    STRING = 8
    ARRAY = 9
    UINT64 = 10
    INT64 = 11
    FLOAT64 = 12


# scalar type -> struct format
_SCALAR = {
    T.UINT8: "<B", T.INT8: "<b", T.UINT16: "<H", T.INT16: "<h", T.UINT32: "<I", T.INT32: "<i",
    T.FLOAT32: "<f", T.BOOL: "<?", T.UINT64: "<Q", T.INT64: "<q", T.FLOAT64: "<d",
}
# scalar type -> numpy dtype (for fast arrays)
_NP = {
    T.UINT8: "<u1", T.INT8: "<i1", T.UINT16: "<u2", T.INT16: "<i2", T.UINT32: "<u4", T.INT32: "<i4",
    T.FLOAT32: "<f4", T.BOOL: "<u1", T.UINT64: "<u8", T.INT64: "<i8", T.FLOAT64: "<f8",
}
TYPE_NAMES = {v: k for k, v in vars(T).items() if not k.startswith("_")}


class GGUFError(ValueError):
    """Malformed or unsupported GGUF input."""


# ----------------------------------------------------------------------------------------------------------
# Writer
# ----------------------------------------------------------------------------------------------------------

@dataclass
class _Tensor:
    name: str
    ne: Tuple[int, ...]   # GGUF dims, ne0 innermost
    ggml_type: int
    data: bytes


def _infer_type(value) -> int:
    if isinstance(value, bool):
        return T.BOOL
    if isinstance(value, int):
        return T.INT32 if -2**31 <= value < 2**31 else T.INT64
    if isinstance(value, float):
        return T.FLOAT32
    if isinstance(value, str):
        return T.STRING
    raise TypeError(f"cannot infer GGUF type of {type(value).__name__}; give vtype")


class GGUFWriter:
    """Collects metadata and tensors, then writes one GGUF v3 file with `write(path)` (or `to_bytes()`)."""

    def __init__(self, alignment: int = DEFAULT_ALIGNMENT):
        self.kv: "OrderedDict[str, Tuple[int, Any, Optional[int]]]" = OrderedDict()
        self.tensors: List[_Tensor] = []
        self.alignment = alignment
        if alignment != DEFAULT_ALIGNMENT:
            self.add("general.alignment", alignment, T.UINT32)

    def add(self, key: str, value, vtype: Optional[int] = None, elem_type: Optional[int] = None):
        """Add one key. vtype defaults from the Python type (bool, int->i32/i64, float->f32, str).
        Arrays: vtype=T.ARRAY with elem_type; for arrays of arrays, elem_type=T.ARRAY and each value is a
        (elem_type, list) pair."""
        if key in self.kv:
            raise KeyError(f"duplicate metadata key {key}")
        if vtype is None:
            if isinstance(value, (list, tuple, np.ndarray)):
                raise TypeError("arrays need vtype=T.ARRAY and elem_type")
            vtype = _infer_type(value)
        if vtype == T.ARRAY and elem_type is None:
            raise TypeError("arrays need elem_type")
        if key == "general.alignment":
            if vtype != T.UINT32 or value <= 0 or value % 8:
                raise ValueError("general.alignment must be a u32 multiple of 8")
            self.alignment = int(value)
        self.kv[key] = (vtype, value, elem_type)

    def add_tensor(self, name: str, data: bytes, ne, ggml_type: int):
        """Add a tensor from its raw bytes (already in ggml_type). ne = GGUF dims, ne0 innermost: a PyTorch
        (out, in) matrix is ne = (in, out)."""
        ne = tuple(int(n) for n in ne)
        n = int(np.prod(ne)) if ne else 1
        blk = quant.TYPE_TRAITS.get(ggml_type, (1, 0))[0]
        if ne and ne[0] % blk:
            raise ValueError(f"tensor {name}: rows of {ne[0]} do not split into blocks of {blk}")
        if len(data) != quant.nbytes(ggml_type, n):
            raise ValueError(f"tensor {name}: {len(data)} bytes, expected {quant.nbytes(ggml_type, n)}")
        if any(t.name == name for t in self.tensors):
            raise KeyError(f"duplicate tensor {name}")
        self.tensors.append(_Tensor(name, ne, ggml_type, bytes(data)))

    def add_tensor_array(self, name: str, arr: np.ndarray, ggml_type: int):
        """Add a float array (numpy shape (..., in), row-major) converted to ggml_type; ne = reversed shape."""
        arr = np.asarray(arr, dtype=np.float32)
        self.add_tensor(name, quant.quantize(ggml_type, arr), tuple(reversed(arr.shape)), ggml_type)

    # -- serialisation --
    @staticmethod
    def _string(s: str) -> bytes:
        b = s.encode("utf-8")
        return struct.pack("<Q", len(b)) + b

    def _value(self, vtype: int, value, elem_type: Optional[int]) -> bytes:
        if vtype == T.STRING:
            return self._string(value)
        if vtype == T.ARRAY:
            out = [struct.pack("<IQ", elem_type, len(value))]
            if elem_type == T.STRING:
                out.extend(self._string(s) for s in value)
            elif elem_type == T.ARRAY:
                out.extend(self._value(T.ARRAY, sub, et) for et, sub in value)
            elif elem_type in _NP:
                a = np.asarray(value)
                if elem_type == T.BOOL:
                    a = a.astype(bool)
                out.append(a.astype(_NP[elem_type]).tobytes())
            else:
                raise ValueError(f"bad array element type {elem_type}")
            return b"".join(out)
        if vtype in _SCALAR:
            return struct.pack(_SCALAR[vtype], value)
        raise ValueError(f"bad value type {vtype}")

    def to_bytes(self) -> bytes:
        al = self.alignment
        parts = [GGUF_MAGIC, struct.pack("<IQQ", GGUF_VERSION, len(self.tensors), len(self.kv))]
        for key, (vt, val, et) in self.kv.items():
            parts += [self._string(key), struct.pack("<I", vt), self._value(vt, val, et)]
        offset = 0
        for t in self.tensors:
            parts += [self._string(t.name), struct.pack("<I", len(t.ne)), struct.pack(f"<{len(t.ne)}Q", *t.ne),
                      struct.pack("<IQ", t.ggml_type, offset)]
            offset += -(-len(t.data) // al) * al
        head = b"".join(parts)
        out = [head, b"\0" * (-len(head) % al)]
        for t in self.tensors:
            out += [t.data, b"\0" * (-len(t.data) % al)]
        return b"".join(out)

    def write(self, path: str):
        with open(path, "wb") as f:
            f.write(self.to_bytes())


# ----------------------------------------------------------------------------------------------------------
# Reader
# ----------------------------------------------------------------------------------------------------------

@dataclass
class TensorInfo:
    name: str
    ne: Tuple[int, ...]   # GGUF dims, ne0 innermost
    ggml_type: int
    offset: int           # relative to the data section
    data: memoryview      # the tensor's bytes

    @property
    def n_elements(self) -> int:
        return int(np.prod(self.ne)) if self.ne else 1

    @property
    def shape(self) -> Tuple[int, ...]:
        """numpy / PyTorch shape (reversed ne): a matrix is (out, in)."""
        return tuple(reversed(self.ne))

    def to_numpy(self) -> np.ndarray:
        """Dequantized float32 array of shape `shape`."""
        return quant.dequantize(self.ggml_type, self.data, self.n_elements).reshape(self.shape)


class _Cursor:
    def __init__(self, buf: memoryview):
        self.buf, self.pos = buf, 0

    def take(self, n: int) -> memoryview:
        if n < 0 or self.pos + n > len(self.buf):
            raise GGUFError(f"truncated file: need {n} bytes at offset {self.pos}, file has {len(self.buf)}")
        b = self.buf[self.pos:self.pos + n]
        self.pos += n
        return b

    def unpack(self, fmt: str):
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def string(self) -> str:
        n = self.unpack("<Q")
        try:
            return bytes(self.take(n)).decode("utf-8")
        except UnicodeDecodeError as e:
            raise GGUFError(f"string at offset {self.pos - n} is not UTF-8: {e}") from None


class GGUFFile:
    """A parsed GGUF file. metadata: key -> Python value (arrays as lists; numeric arrays as numpy arrays);
    types: key -> (value_type, element_type or None); tensors: name -> TensorInfo (in file order)."""

    def __init__(self, data: bytes):
        self.raw = memoryview(bytes(data))
        c = _Cursor(self.raw)
        if bytes(c.take(4)) != GGUF_MAGIC:
            raise GGUFError("bad magic (not a GGUF file)")
        self.version = c.unpack("<I")
        if self.version not in (2, 3):
            raise GGUFError(f"unsupported GGUF version {self.version} (2 and 3 are read)")
        n_tensors, n_kv = c.unpack("<Q"), c.unpack("<Q")
        if n_tensors > len(self.raw) or n_kv > len(self.raw):
            raise GGUFError(f"implausible counts: {n_tensors} tensors, {n_kv} keys")
        self.metadata: "OrderedDict[str, Any]" = OrderedDict()
        self.types: Dict[str, Tuple[int, Optional[int]]] = {}
        for _ in range(n_kv):
            key = c.string()
            vt = c.unpack("<I")
            val, et = self._value(c, vt, 0)
            if key in self.metadata:
                raise GGUFError(f"duplicate key {key}")
            self.metadata[key], self.types[key] = val, (vt, et)
        self.alignment = DEFAULT_ALIGNMENT
        if "general.alignment" in self.metadata:
            al = self.metadata["general.alignment"]
            if self.types["general.alignment"][0] != T.UINT32 or al <= 0 or al % 8:
                raise GGUFError(f"bad general.alignment {al}")
            self.alignment = al
        infos = []
        for _ in range(n_tensors):
            name = c.string()
            nd = c.unpack("<I")
            if nd > 4:
                raise GGUFError(f"tensor {name}: {nd} dims (max 4)")
            ne = tuple(c.unpack("<Q") for _ in range(nd))
            gt, off = c.unpack("<I"), c.unpack("<Q")
            infos.append((name, ne, gt, off))
        self.data_offset = c.pos + (-c.pos % self.alignment)
        self.tensors: "OrderedDict[str, TensorInfo]" = OrderedDict()
        for name, ne, gt, off in infos:
            if name in self.tensors:
                raise GGUFError(f"duplicate tensor {name}")
            if gt not in quant.TYPE_TRAITS:
                raise GGUFError(f"tensor {name}: ggml type {gt} not supported")
            if off % self.alignment:
                raise GGUFError(f"tensor {name}: offset {off} not aligned to {self.alignment}")
            n = int(np.prod(ne)) if ne else 1
            if ne and ne[0] % quant.TYPE_TRAITS[gt][0]:
                raise GGUFError(f"tensor {name}: rows of {ne[0]} not a multiple of the block size")
            try:
                size = quant.nbytes(gt, n)
            except ValueError as e:
                raise GGUFError(f"tensor {name}: {e}") from None
            start = self.data_offset + off
            if start + size > len(self.raw):
                raise GGUFError(f"tensor {name}: data [{start}, {start + size}) past end of file ({len(self.raw)})")
            self.tensors[name] = TensorInfo(name, ne, gt, off, self.raw[start:start + size])

    def _value(self, c: _Cursor, vt: int, depth: int):
        if vt == T.STRING:
            return c.string(), None
        if vt in _SCALAR:
            return c.unpack(_SCALAR[vt]), None
        if vt == T.ARRAY:
            if depth > 8:
                raise GGUFError("arrays nested too deep")
            et, n = c.unpack("<I"), c.unpack("<Q")
            if et in _NP:
                size = np.dtype(_NP[et]).itemsize
                if n > len(c.buf):
                    raise GGUFError(f"array of {n} elements longer than the file")
                a = np.frombuffer(c.take(n * size), dtype=_NP[et]).copy()
                return (a.astype(bool) if et == T.BOOL else a), et
            if et in (T.STRING, T.ARRAY):
                if n > len(c.buf):
                    raise GGUFError(f"array of {n} elements longer than the file")
                return [self._value(c, et, depth + 1)[0] for _ in range(n)], et
            raise GGUFError(f"bad array element type {et}")
        raise GGUFError(f"bad metadata value type {vt} at offset {c.pos}")

    def get(self, key: str, default=None):
        return self.metadata.get(key, default)

    def tensor(self, name: str) -> np.ndarray:
        """Dequantized float32 tensor with numpy shape (reversed ne)."""
        if name not in self.tensors:
            raise KeyError(f"tensor {name} not in file")
        return self.tensors[name].to_numpy()


def read_gguf(path: str) -> GGUFFile:
    with open(path, "rb") as f:
        return GGUFFile(f.read())
