#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""safetensors files without the `safetensors` package: pure Python (struct + json); torch and
numpy are used when present, never required.

  save(path, tensors, metadata=None)   tensors: {name: torch.Tensor | numpy.ndarray | Tensor}
  load(path, as_="auto") -> (tensors, metadata)

Files are written byte for byte as the reference writer (the Rust crate behind the `safetensors`
package, safetensors/src/tensor.rs `prepare`) writes them: `__metadata__` first when given, then
the tensors laid out by descending dtype alignment (I64/U64, F64, F32, I32, BF16, F16, I16, I8,
U8, BOOL) and by name within a dtype, the JSON compact (no spaces, non-ASCII as UTF-8) and padded
with spaces to a multiple of 8 bytes, the data little-endian in C order. The package orders
several metadata entries at random (a Rust HashMap); this writer sorts them, as ddpm's
SafetensorsWriter does.

load() reads as strictly as ddpm's SafetensorsFile (tensors tile the data section from byte 0,
sizes match dtype x shape, no duplicate keys, header <= 100 MB) and, like it, accepts bytes after
the last tensor. It returns torch tensors when torch is importable, else numpy arrays (BF16 as
float32, numpy having no bfloat16), else Tensor records; as_="torch", "numpy" or "raw" chooses.
The metadata is {} when the file has none.

Command line:
  safetensors_io.py [--out DIR]   write ddpm's committed test file, safetensors_all_dtypes
                                  .safetensors (default DIR: tests/io/data)
  safetensors_io.py check [DIR]   exit 1 unless that file regenerates byte for byte and the file
                                  the real package wrote (safetensors_reference_numpy.safetensors)
                                  loads and re-serializes byte for byte
  safetensors_io.py half-table    print the float16 rounding table of tests/io/safetensors_test.cpp
"""

import argparse
import json
import math
import os
import struct
import sys
from fractions import Fraction
from typing import NamedTuple

MAX_HEADER_BYTES = 100_000_000  # the Rust crate's limit

# dtype -> (struct code or None, bytes per element). BF16 has no struct code.
DTYPES = {
    "F64": ("d", 8), "F32": ("f", 4), "F16": ("e", 2), "BF16": (None, 2), "I64": ("q", 8),
    "I32": ("i", 4), "I16": ("h", 2), "I8": ("b", 1), "U8": ("B", 1), "BOOL": ("?", 1),
}
# The Rust crate's Dtype order (increasing alignment); the writer lays out the highest first.
RANK = {name: i for i, name in enumerate(
    ["BOOL", "U8", "I8", "I16", "F16", "BF16", "I32", "F32", "F64", "I64"])}

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_DATA = os.path.join(HERE, "..", "tests", "io", "data")
TEST_FILE = "safetensors_all_dtypes.safetensors"
REFERENCE_FILE = "safetensors_reference_numpy.safetensors"


class Tensor(NamedTuple):
    """A tensor as the file holds it: dtype name, shape, raw little-endian C-order bytes."""
    dtype: str
    shape: tuple
    data: bytes

    def values(self):
        """The elements as a flat list of Python floats, ints or bools."""
        code, size = DTYPES[self.dtype]
        count = len(self.data) // size
        if code is None:  # BF16: the top half of a float32
            halves = struct.unpack(f"<{count}H", self.data)
            return [struct.unpack("<f", struct.pack("<I", h << 16))[0] for h in halves]
        return list(struct.unpack(f"<{count}{code}", self.data))


def bfloat16_bits(x):
    """The bfloat16 bit pattern of the float x: rounded to nearest, ties to even, in exact
    rational arithmetic (no double rounding through float32); overflow gives infinity."""
    if math.isnan(x):
        return struct.unpack("<I", struct.pack("<f", x))[0] >> 16
    sign = 0x8000 if math.copysign(1.0, x) < 0 else 0
    if math.isinf(x) or x == 0:
        return sign | (0x7F80 if math.isinf(x) else 0)
    _, e = math.frexp(abs(x))  # |x| in [2^(e-1), 2^e)
    quantum = Fraction(2) ** max(e - 8, -133)  # 8 significant bits; subnormal step 2^-133
    rounded = round(Fraction(abs(x)) / quantum) * quantum  # Fraction rounds ties to even
    if rounded >= Fraction(2) ** 128:
        return sign | 0x7F80
    return sign | (struct.unpack("<I", struct.pack("<f", float(rounded)))[0] >> 16)


def half_bits(x):
    """The IEEE binary16 bit pattern of the float x (CPython's own rounding, ties to even);
    values that round beyond the largest half give infinity rather than OverflowError."""
    try:
        return struct.unpack("<H", struct.pack("<e", x))[0]
    except OverflowError:
        return (0x8000 if x < 0 else 0) | 0x7C00


def tensor(dtype, shape, values):
    """A Tensor of `dtype` from a flat list of Python numbers (F16 and BF16 rounded to nearest,
    ties to even)."""
    shape = tuple(int(d) for d in shape)
    if math.prod(shape) != len(values):
        raise ValueError(f"shape {shape} holds {math.prod(shape)} elements, not {len(values)}")
    code, _ = DTYPES[dtype]
    if dtype == "F16":
        data = struct.pack(f"<{len(values)}H", *[half_bits(float(v)) for v in values])
    elif dtype == "BF16":
        data = struct.pack(f"<{len(values)}H", *[bfloat16_bits(float(v)) for v in values])
    else:
        data = struct.pack(f"<{len(values)}{code}", *values)
    return Tensor(dtype, shape, data)


def _torch_dtypes(torch):
    return {torch.float64: "F64", torch.float32: "F32", torch.float16: "F16",
            torch.bfloat16: "BF16", torch.int64: "I64", torch.int32: "I32", torch.int16: "I16",
            torch.int8: "I8", torch.uint8: "U8", torch.bool: "BOOL"}


def _as_tensor(obj):
    """A Tensor record of a Tensor, a torch.Tensor or a numpy array."""
    if isinstance(obj, Tensor):
        return obj
    module = type(obj).__module__.split(".")[0]
    if module == "torch":
        import torch
        t = obj.detach().cpu().contiguous()
        dtype = _torch_dtypes(torch).get(t.dtype)
        if dtype is None:
            raise ValueError(f"unsupported torch dtype {t.dtype}")
        try:
            import numpy  # noqa: F401  (t.numpy() needs it)
            array = (t.view(torch.int16) if dtype == "BF16" else t).numpy()
            return _as_tensor_numpy(array, dtype, tuple(t.shape))
        except ImportError:
            return tensor(dtype, tuple(t.shape), t.reshape(-1).tolist())
    if module == "numpy":
        return _as_tensor_numpy(obj, None, tuple(obj.shape))
    raise TypeError(f"cannot save a {type(obj).__name__}: give a torch.Tensor, a numpy array or "
                    "a safetensors_io.Tensor")


def _as_tensor_numpy(array, dtype, shape):
    import numpy
    if dtype is None:
        kind, size = array.dtype.kind, array.dtype.itemsize
        dtype = {("f", 8): "F64", ("f", 4): "F32", ("f", 2): "F16", ("i", 8): "I64",
                 ("i", 4): "I32", ("i", 2): "I16", ("i", 1): "I8", ("u", 1): "U8",
                 ("b", 1): "BOOL"}.get((kind, size))
        if dtype is None:
            raise ValueError(f"unsupported numpy dtype {array.dtype}")
    little = numpy.ascontiguousarray(array).astype(array.dtype.newbyteorder("<"), copy=False)
    return Tensor(dtype, shape, little.tobytes())


def serialize(tensors, metadata=None):
    """The bytes of a safetensors file holding `tensors` ({name: tensor}) and `metadata`."""
    records = {name: _as_tensor(t) for name, t in tensors.items()}
    header = {}
    if metadata is not None:
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
            raise TypeError("metadata must map strings to strings")
        header["__metadata__"] = dict(sorted(metadata.items()))
    order = sorted(records, key=lambda name: (-RANK[records[name].dtype], name))
    offset = 0
    for name in order:
        if name == "__metadata__":
            raise ValueError("'__metadata__' is the header's metadata key, not a tensor name")
        r = records[name]
        header[name] = {"dtype": r.dtype, "shape": list(r.shape),
                        "data_offsets": [offset, offset + len(r.data)]}
        offset += len(r.data)
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(records[n].data for n in order)


def save(path, tensors, metadata=None):
    """Writes `tensors` and `metadata` to `path` (atomically: a temporary file renamed over it)."""
    data = serialize(tensors, metadata)
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _no_duplicates(pairs):
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        duplicate = next(k for k in keys if keys.count(k) > 1)
        raise ValueError(f"the header has the key {duplicate!r} twice in one object")
    return dict(pairs)


def deserialize(data, as_="auto", source="<bytes>"):
    """(tensors in data-offset order, metadata) of the bytes of a safetensors file."""
    def fail(what):
        raise ValueError(f"safetensors file {source!r}: {what}")

    if len(data) < 8:
        fail(f"only {len(data)} bytes, shorter than the 8-byte header length field")
    (n,) = struct.unpack("<Q", data[:8])
    if n > MAX_HEADER_BYTES or n > len(data) - 8:
        fail(f"the header length field says {n} bytes ({len(data) - 8} follow, limit "
             f"{MAX_HEADER_BYTES})")
    try:
        header = json.loads(data[8:8 + n].decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, ValueError) as e:
        fail(f"the header is not valid JSON: {e}")
    if not isinstance(header, dict):
        fail("the header is not a JSON object")
    metadata = header.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        fail("__metadata__ is not an object of strings")
    entries = []
    for name, info in header.items():
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            fail(f"tensor {name!r}: the entry must have exactly dtype, shape and data_offsets")
        dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if dtype not in DTYPES:
            fail(f"tensor {name!r}: unsupported dtype {dtype!r}")
        if not isinstance(shape, list) or any(type(d) is not int or d < 0 for d in shape):
            fail(f"tensor {name!r}: shape {shape} is not a list of non-negative integers")
        if (not isinstance(offsets, list) or len(offsets) != 2
                or any(type(o) is not int or o < 0 for o in offsets)):
            fail(f"tensor {name!r}: data_offsets {offsets} is not [begin, end]")
        if offsets[1] - offsets[0] != math.prod(shape) * DTYPES[dtype][1]:
            fail(f"tensor {name!r}: data_offsets {offsets} do not hold {dtype} x {shape}")
        entries.append((offsets[0], offsets[1], name, dtype, tuple(shape)))
    entries.sort()
    body = data[8 + n:]
    position = 0
    for begin, end, name, _, _ in entries:
        if begin != position or end > len(body):
            fail(f"tensor {name!r}: data_offsets [{begin}, {end}] do not follow the previous "
                 f"tensor (at {position}) inside the {len(body)}-byte data section")
        position = end
    records = {name: Tensor(dtype, shape, bytes(body[begin:end]))
               for begin, end, name, dtype, shape in entries}
    return {name: _convert(r, as_) for name, r in records.items()}, metadata


def load(path, as_="auto"):
    """(tensors, metadata) of the safetensors file at `path`; see the module comment."""
    with open(path, "rb") as f:
        return deserialize(f.read(), as_, source=str(path))


def _convert(record, as_):
    if as_ == "auto":
        for candidate in ("torch", "numpy"):
            try:
                __import__(candidate)
                return _convert(record, candidate)
            except ImportError:
                pass
        return record
    if as_ == "raw":
        return record
    if as_ == "torch":
        import torch
        dtype = {v: k for k, v in _torch_dtypes(torch).items()}[record.dtype]
        if not record.data:
            return torch.empty(record.shape, dtype=dtype)
        return torch.frombuffer(bytearray(record.data), dtype=dtype).reshape(record.shape)
    if as_ == "numpy":
        import numpy
        if record.dtype == "BF16":
            return numpy.array(record.values(), dtype=numpy.float32).reshape(record.shape)
        code = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4",
                "I16": "<i2", "I8": "i1", "U8": "u1", "BOOL": "?"}[record.dtype]
        return numpy.frombuffer(record.data, dtype=code).reshape(record.shape).copy()
    raise ValueError(f"as_ must be auto, torch, numpy or raw, not {as_!r}")


def test_tensors():
    """The content of ddpm's committed test file: every dtype with values that probe rounding,
    subnormals, infinities, NaN and integer limits, a 0-d scalar, empty tensors, a non-ASCII name
    and metadata that needs JSON escapes. tests/io/safetensors_test.cpp writes the same with
    SafetensorsWriter and expects these bytes."""
    inf, nan = math.inf, math.nan
    tensors = {
        "f64": tensor("F64", [2, 3], [0.1, -2.5, 1e300, -0.0, 5e-324, math.pi]),
        "f32": tensor("F32", [3, 1], [0.1, -3.25, 1e-40]),
        "f16": tensor("F16", [9], [1.0, -2.0, 65504.0, 65520.0, 2.0**-24, 3e-8, 0.1, -inf, nan]),
        "bf16": tensor("BF16", [2, 4], [1.0, -0.1, 3e38, 3.4e38, 1e-40, -inf, nan, 2.0**-134]),
        "i64": tensor("I64", [3], [-9007199254740993, 2**62, -1]),
        "i32": tensor("I32", [2, 2], [-2**31, 2**31 - 1, 0, 7]),
        "i16": tensor("I16", [2], [-32768, 32767]),
        "i8": tensor("I8", [3], [-128, 127, -1]),
        "u8": tensor("U8", [2], [0, 255]),
        "bool": tensor("BOOL", [4], [True, False, False, True]),
        "scalar": tensor("F32", [], [42.5]),
        "empty": tensor("F32", [0], []),
        "empty_2x0": tensor("F64", [2, 0], []),
        "ünïcode.weight": tensor("F32", [1], [1.5]),
    }
    metadata = {"format": "pt", "note": "quote \" backslash \\ newline \n tab \t bell \x07 ünï €"}
    return tensors, metadata


def half_table():
    """C++ rows {x, bits} of doubles and their float16 patterns by CPython's struct."""
    import random
    rng = random.Random(16)
    xs = [0.0, -0.0, 1.0, 65504.0, 65519.99, 65520.0, -1e6, 2.0**-24, 2.0**-25, 3 * 2.0**-26,
          2.0**-14, 2.0**-14 - 2.0**-25, 1 + 2.0**-11, 1 + 3 * 2.0**-11, 0.1, 1 / 3, 1e-8]
    xs += [rng.uniform(-1, 1) * 2.0 ** rng.randint(-26, 17) for _ in range(40)]
    for x in xs:
        print(f"      {{{x!r}, 0x{half_bits(x):04x}}},")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", nargs="?", default="write", choices=["write", "check",
                                                                         "half-table"])
    parser.add_argument("dir", nargs="?", default=DEFAULT_DATA)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    directory = args.out or args.dir
    if args.command == "half-table":
        half_table()
        return 0
    tensors, metadata = test_tensors()
    if args.command == "write":
        os.makedirs(directory, exist_ok=True)
        save(os.path.join(directory, TEST_FILE), tensors, metadata)
        print(f"wrote {os.path.join(directory, TEST_FILE)}")
        return 0
    ok = True
    with open(os.path.join(directory, TEST_FILE), "rb") as f:
        committed = f.read()
    if serialize(tensors, metadata) != committed:
        print(f"{TEST_FILE}: regenerated bytes differ from the committed file")
        ok = False
    loaded, loaded_metadata = deserialize(committed, "raw")
    if serialize(loaded, loaded_metadata) != committed:
        print(f"{TEST_FILE}: load + save does not give the same bytes")
        ok = False
    with open(os.path.join(directory, REFERENCE_FILE), "rb") as f:
        reference = f.read()
    loaded, _ = deserialize(reference, "raw")
    if serialize(loaded) != reference:  # the package wrote it without metadata
        print(f"{REFERENCE_FILE}: load + save differs from the bytes the safetensors package wrote")
        ok = False
    print("ok" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
