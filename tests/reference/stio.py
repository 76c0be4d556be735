"""Minimal pure-python safetensors reader/writer and FP8 (E4M3/E5M2) codecs for the qaft reference.

Written from the format description (formats.md section 3): file = u64 little-endian header length N,
N bytes of UTF-8 JSON header (padded with spaces), then the raw little-endian, row-major byte buffer.
Header entries: {"dtype": str, "shape": [...], "data_offsets": [begin, end]} relative to the buffer
start, plus an optional "__metadata__" {str: str}.

Only numpy and torch (Debian's python3-torch, CPU) are used.  FP8 values are decoded with a 256-entry
table built from the E4M3 / E5M2 bit formulas (no torch.float8 dtype is needed).
"""

import json
import math
import mmap
import os
import struct

import numpy as np
import torch

# dtype string -> (numpy dtype of the stored bytes, bytes per element)
_NP = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16,
    "BF16": np.int16,            # reinterpreted as torch.bfloat16
    "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8,
    "U8": np.uint8, "BOOL": np.bool_,
    "F8_E4M3": np.uint8,         # codes; decode with e4m3_table()
    "F8_E5M2": np.uint8,
}
_ITEMSIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1,
             "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}

MAX_HEADER = 100_000_000


class SafetensorsError(Exception):
    pass


# ----------------------------------------------------------------------------------------------
# FP8 code tables
# ----------------------------------------------------------------------------------------------

def e4m3_value(code):
    """Value of one E4M3 (float8_e4m3fn) code: s eeee mmm, bias 7, subnormal when e == 0,
    0x7F / 0xFF NaN, no infinities."""
    s = -1.0 if code & 0x80 else 1.0
    e = (code >> 3) & 0xF
    m = code & 0x7
    if e == 0xF and m == 0x7:
        return float("nan")
    if e == 0:
        return s * (m / 8.0) * 2.0 ** -6
    return s * (1.0 + m / 8.0) * 2.0 ** (e - 7)


def e5m2_value(code):
    """Value of one E5M2 code: s eeeee mm, bias 15, e == 31: inf (m == 0) or NaN."""
    s = -1.0 if code & 0x80 else 1.0
    e = (code >> 2) & 0x1F
    m = code & 0x3
    if e == 0x1F:
        return s * float("inf") if m == 0 else float("nan")
    if e == 0:
        return s * (m / 4.0) * 2.0 ** -14
    return s * (1.0 + m / 4.0) * 2.0 ** (e - 15)


_E4M3_TABLE = np.array([e4m3_value(c) for c in range(256)], dtype=np.float64)
_E5M2_TABLE = np.array([e5m2_value(c) for c in range(256)], dtype=np.float64)


def e4m3_table():
    return _E4M3_TABLE.copy()


def decode_fp8(codes, fmt="F8_E4M3"):
    """uint8 codes (numpy or torch) -> float64 torch tensor (exact)."""
    if isinstance(codes, torch.Tensor):
        codes = codes.numpy()
    table = _E4M3_TABLE if fmt == "F8_E4M3" else _E5M2_TABLE
    return torch.from_numpy(table[codes.astype(np.int64)])


def encode_e4m3(x):
    """float tensor/array -> uint8 E4M3 codes, round-to-nearest-even, saturating to +-448
    (|x| > 448 gives the code of 448; NaN gives 0x7F).  Only used to make test checkpoints."""
    a = np.asarray(x.detach().double().numpy() if isinstance(x, torch.Tensor) else x, dtype=np.float64)
    pos = _E4M3_TABLE[:0x7F]                      # codes 0x00..0x7E, strictly increasing, 0..448
    mag = np.minimum(np.abs(a), 448.0)
    mag = np.where(np.isnan(a), 0.0, mag)
    hi = np.searchsorted(pos, mag, side="left")   # pos[hi-1] < mag <= pos[hi]
    hi = np.clip(hi, 0, 0x7E)
    lo = np.clip(hi - 1, 0, 0x7E)
    dlo = mag - pos[lo]
    dhi = pos[hi] - mag
    pick_hi = (dhi < dlo) | ((dhi == dlo) & (hi % 2 == 0))
    code = np.where(pick_hi, hi, lo).astype(np.uint8)
    sign = np.signbit(a).astype(np.uint8) << 7
    code = code | sign
    code = np.where(np.isnan(a), 0x7F, code).astype(np.uint8)
    return code


def cdiv(a, b):
    return (a + b - 1) // b


def expand_block_scales(scale, rows, cols, block=128):
    """[cdiv(rows,block), cdiv(cols,block)] -> [rows, cols] (each block's multiplier)."""
    s = scale.repeat_interleave(block, dim=0)[:rows]
    return s.repeat_interleave(block, dim=1)[:, :cols]


def quantize_fp8_blocks(w, block=128):
    """Block-FP8 quantisation of a 2-D float weight (used to build test checkpoints only):
    per 128x128 block sigma = amax/448 in float32 (1.0 for an all-zero block),
    codes = RNE_e4m3(w / sigma).  Returns (codes uint8 numpy [out,in], scale float32 torch)."""
    w32 = w.detach().to(torch.float32)
    rows, cols = w32.shape
    nb_r, nb_c = cdiv(rows, block), cdiv(cols, block)
    scale = torch.empty(nb_r, nb_c, dtype=torch.float32)
    for i in range(nb_r):
        for j in range(nb_c):
            blk = w32[i * block:(i + 1) * block, j * block:(j + 1) * block]
            amax = blk.abs().max()
            scale[i, j] = amax / 448.0 if amax > 0 else 1.0
    sfull = expand_block_scales(scale, rows, cols, block)
    codes = encode_e4m3((w32 / sfull).double())
    return codes, scale


# ----------------------------------------------------------------------------------------------
# reader
# ----------------------------------------------------------------------------------------------

class SafetensorsFile:
    """Parsed safetensors file; tensors are materialised lazily with get()."""

    def __init__(self, path):
        self.path = path
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise SafetensorsError(f"{path}: file shorter than 8 bytes")
            (n,) = struct.unpack("<Q", head)
            if n > MAX_HEADER or 8 + n > size:
                raise SafetensorsError(f"{path}: bad header length {n}")
            raw = f.read(n)
        try:
            header = json.loads(raw.decode("utf-8"))
        except Exception as e:  # noqa: BLE001
            raise SafetensorsError(f"{path}: header is not JSON: {e}")
        if not isinstance(header, dict):
            raise SafetensorsError(f"{path}: header is not an object")
        self.metadata = header.pop("__metadata__", None) or {}
        self.data_start = 8 + n
        self.entries = {}
        spans = []
        for name, ent in header.items():
            dt = ent.get("dtype")
            if dt not in _NP:
                raise SafetensorsError(f"{path}: tensor {name}: unsupported dtype {dt}")
            shape = [int(s) for s in ent["shape"]]
            b, e = (int(v) for v in ent["data_offsets"])
            numel = int(np.prod(shape)) if shape else 1
            if e - b != numel * _ITEMSIZE[dt]:
                raise SafetensorsError(f"{path}: tensor {name}: byte size {e - b} != {numel} x {dt}")
            self.entries[name] = (dt, shape, b, e)
            spans.append((b, e, name))
        spans.sort()
        pos = 0
        for b, e, name in spans:
            if b != pos:
                raise SafetensorsError(f"{path}: tensor {name}: data not contiguous (hole/overlap at {b})")
            pos = e
        if self.data_start + pos != size:
            raise SafetensorsError(f"{path}: buffer length {pos} does not match file size {size}")
        self._mm = None

    def keys(self):
        return list(self.entries.keys())

    def dtype(self, name):
        return self.entries[name][0]

    def shape(self, name):
        return list(self.entries[name][1])

    def _buf(self):
        if self._mm is None:
            with open(self.path, "rb") as f:
                if os.path.getsize(self.path) == 0:
                    raise SafetensorsError("empty file")
                self._mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        return self._mm

    def numpy(self, name):
        dt, shape, b, e = self.entries[name]
        numel = int(np.prod(shape)) if shape else 1
        arr = np.frombuffer(self._buf(), dtype=np.dtype(_NP[dt]).newbyteorder("<"), count=numel,
                            offset=self.data_start + b)
        return np.array(arr, dtype=np.dtype(_NP[dt])).reshape(shape)

    def get(self, name):
        """torch tensor: F8_* come back as uint8 codes (decode with decode_fp8), BF16 as bfloat16."""
        dt = self.entries[name][0]
        arr = self.numpy(name)
        t = torch.from_numpy(arr)
        if dt == "BF16":
            t = t.view(torch.bfloat16)
        return t


def load_file(path):
    f = SafetensorsFile(path)
    return {k: f.get(k) for k in f.keys()}, f


# ----------------------------------------------------------------------------------------------
# writer
# ----------------------------------------------------------------------------------------------

def _to_bytes(t, dtype):
    """(torch tensor or numpy array, dtype string) -> (bytes, shape)."""
    if isinstance(t, np.ndarray):
        arr = t
    else:
        t = t.detach().contiguous()
        if dtype == "BF16":
            arr = t.to(torch.bfloat16).view(torch.int16).numpy()
        elif dtype in ("F8_E4M3", "F8_E5M2", "U8"):
            arr = t.to(torch.uint8).numpy() if t.dtype != torch.uint8 else t.numpy()
        else:
            arr = t.numpy()
    npdt = np.dtype(_NP[dtype]).newbyteorder("<")
    if dtype != "BF16":
        arr = np.asarray(arr).astype(npdt, copy=False)
    else:
        arr = np.asarray(arr).astype(np.dtype(np.int16).newbyteorder("<"), copy=False)
    return np.ascontiguousarray(arr).tobytes(), list(arr.shape)


_DEFAULT_DT = {torch.float64: "F64", torch.float32: "F32", torch.float16: "F16",
               torch.bfloat16: "BF16", torch.int64: "I64", torch.int32: "I32", torch.int16: "I16",
               torch.int8: "I8", torch.uint8: "U8", torch.bool: "BOOL"}


def save_file(tensors, path, metadata=None):
    """tensors: {name: tensor} or {name: (tensor_or_numpy, dtype_string)}.
    Order in the buffer: larger element size first, then name (natural alignment); header padded
    with spaces to a multiple of 8 bytes."""
    items = []
    for name, v in tensors.items():
        if isinstance(v, tuple):
            t, dt = v
        else:
            t, dt = v, _DEFAULT_DT[v.dtype]
        data, shape = _to_bytes(t, dt)
        items.append((-_ITEMSIZE[dt], name, dt, shape, data))
    items.sort()
    header = {}
    off = 0
    for _, name, dt, shape, data in items:
        header[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(data)]}
        off += len(data)
    if metadata is None:
        metadata = {"format": "pt"}
    header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    hb = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hb += b" " * ((8 - len(hb) % 8) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for *_, data in items:
            f.write(data)
    os.replace(tmp, path)


def bf16_round(t):
    """Round a float tensor to the nearest bfloat16 (RNE), returned in the input dtype."""
    return t.to(torch.float32).to(torch.bfloat16).to(t.dtype)


if __name__ == "__main__":
    # tiny sanity print of the E4M3 table's landmarks
    print("0x7E", e4m3_value(0x7E), "0x01", e4m3_value(0x01), "0x08", e4m3_value(0x08),
          "0x7F", e4m3_value(0x7F), "max subnormal", e4m3_value(0x07), math.ldexp(7, -9))
