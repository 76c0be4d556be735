#!/usr/bin/env python3
"""Regenerates the safetensors seed corpus (tests/fuzz/corpus/safetensors/): a few tiny valid
files and a few near-misses, written byte by byte here (independently of qaft's writer).
Run from anywhere: python3 tests/fuzz/make_safetensors_corpus.py"""
import json
import os
import struct

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "safetensors")


def image(header, buffer=b"", pad=True, declared=None):
    text = header if isinstance(header, bytes) else json.dumps(header, separators=(",", ":")).encode()
    if pad:
        text += b" " * (-len(text) % 8)
    n = len(text) if declared is None else declared
    return struct.pack("<Q", n) + text + buffer


def entry(dtype, shape, begin, end):
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


FILES = {
    "valid_empty": image({}),
    "valid_empty_unpadded": image({}, pad=False),
    "valid_metadata": image({"__metadata__": {"format": "pt"}, "w": entry("F32", [2], 0, 8)},
                            struct.pack("<2f", 1.5, -2.0)),
    "valid_mixed": image({
        "a.weight": entry("BF16", [2, 2], 0, 8),
        "a.weight_scale_inv": entry("F8_E8M0", [1, 1], 8, 9),
        "a.q": entry("F8_E4M3", [3], 9, 12),
        "b.ids": entry("I64", [], 12, 20),
        "b.none": entry("I32", [0, 4], 20, 20),
        "b.mask": entry("BOOL", [2], 20, 22),
    }, bytes(range(22))),
    "valid_all_dtypes": image({
        f"t{i}": entry(d, [1], off, off + size)
        for i, (d, size, off) in enumerate([
            ("F64", 8, 0), ("I64", 8, 8), ("F32", 4, 16), ("I32", 4, 20), ("BF16", 2, 24),
            ("F16", 2, 26), ("I16", 2, 28), ("F8_E4M3", 1, 30), ("F8_E5M2", 1, 31),
            ("F8_E8M0", 1, 32), ("I8", 1, 33), ("U8", 1, 34), ("BOOL", 1, 35)])
    }, bytes(36)),
    "bad_overlap": image({"a": entry("F32", [1], 0, 4), "b": entry("F32", [1], 2, 6)}, bytes(6)),
    "bad_hole": image({"a": entry("U8", [1], 1, 2)}, bytes(2)),
    "bad_size": image({"a": entry("F32", [2], 0, 4)}, bytes(4)),
    "bad_truncated": image({"a": entry("F32", [4], 0, 16)}, bytes(9)),
    "bad_header_len": image({}, declared=4096),
    "bad_dup_key": image(b'{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},'
                         b'"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}', b"\x01"),
    "bad_unsupported": image({"a": entry("U32", [1], 0, 4)}, bytes(4)),
    "bad_metadata": image(b'{"__metadata__":{"k":1}}'),
}

os.makedirs(OUT, exist_ok=True)
for name, data in FILES.items():
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(data)
print(f"wrote {len(FILES)} files to {OUT}")
