"""Minimal safetensors writer and bounds-checked reader (pure Python + torch).

Format: 8-byte little-endian header length, a JSON header
{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}
padded with spaces so that the data section starts 8-aligned, then the raw
little-endian tensor bytes.

  from safetensors_io import read_safetensors, write_safetensors
  write_safetensors("w.safetensors", {"x": torch.ones(2)}, {"note": "hi"})
  tensors, metadata = read_safetensors("w.safetensors")
"""
import json
import os
import struct

import numpy as np
import torch

# torch dtype -> (safetensors name, little-endian numpy dtype of the raw bytes)
_DTYPES = {
    torch.float64: ("F64", "<f8"), torch.float32: ("F32", "<f4"),
    torch.float16: ("F16", "<f2"), torch.bfloat16: ("BF16", "<i2"),
    torch.int64: ("I64", "<i8"), torch.int32: ("I32", "<i4"),
    torch.int16: ("I16", "<i2"), torch.int8: ("I8", "<i1"),
    torch.uint8: ("U8", "<u1"), torch.bool: ("BOOL", "<u1"),
}
_BY_NAME = {name: (dt, np_dt) for dt, (name, np_dt) in _DTYPES.items()}


def _to_bytes(t):
    t = t.detach().cpu().contiguous()
    name, np_dt = _DTYPES[t.dtype]
    if t.dtype == torch.bfloat16:  # numpy has no bfloat16: write its bit pattern
        t = t.view(torch.int16)
    return name, t.numpy().astype(np_dt, copy=False).tobytes()


def write_safetensors(path, tensors, metadata=None):
    """Write {name: tensor} (any dtype in _DTYPES) atomically (temp file + os.replace).

    metadata: optional {str: str}; stored as "__metadata__" after the tensors.
    """
    header, blobs, off = {}, [], 0
    for name, t in tensors.items():
        dtype, raw = _to_bytes(t)
        header[name] = {"dtype": dtype, "shape": list(t.shape),
                        "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    if metadata is not None:
        header["__metadata__"] = metadata
    js = json.dumps(header, separators=(",", ":")).encode("utf-8")
    js += b" " * ((-(8 + len(js))) % 8)
    tmp = path + ".tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(struct.pack("<Q", len(js)) + js + b"".join(blobs))
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def read_safetensors(path):
    """Return ({name: tensor}, metadata dict). Raises ValueError on a malformed file."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        raise ValueError(f"{path}: file too short for a safetensors header")
    (n,) = struct.unpack("<Q", data[:8])
    if n > len(data) - 8:
        raise ValueError(f"{path}: header length {n} exceeds the file size {len(data)}")
    try:
        header = json.loads(data[8:8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: bad JSON header: {e}") from None
    if not isinstance(header, dict):
        raise ValueError(f"{path}: header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    body, tensors = memoryview(data)[8 + n:], {}
    for name, e in header.items():
        try:
            dt, np_dt = _BY_NAME[e["dtype"]]
            shape = [int(s) for s in e["shape"]]
            begin, end = (int(o) for o in e["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"{path}: bad header entry for '{name}': {e}") from None
        if any(s < 0 for s in shape) or not 0 <= begin <= end <= len(body):
            raise ValueError(f"{path}: '{name}' offsets [{begin}, {end}] outside the "
                             f"data section ({len(body)} bytes) or negative shape")
        count = int(np.prod(shape, dtype=np.int64))
        if count * np.dtype(np_dt).itemsize != end - begin:
            raise ValueError(f"{path}: '{name}' shape {shape} ({e['dtype']}) does not "
                             f"match its {end - begin} bytes")
        arr = np.frombuffer(body[begin:end], dtype=np_dt).astype(np_dt[1:])  # native copy
        t = torch.from_numpy(arr)
        if dt == torch.bfloat16:
            t = t.view(torch.bfloat16)
        elif dt == torch.bool:
            t = t.to(torch.bool)
        tensors[name] = t.reshape(shape)
    return tensors, metadata
