"""The binary tensor extension of the Open Inference Protocol, as tritonclient.http and KServe
send and read it: a JSON header of `Inference-Header-Content-Length` bytes, then each binary
tensor's raw bytes in order (little-endian, row-major; a BYTES element is a 4-byte length and
its bytes), each tensor's size in its `parameters.binary_data_size`."""

from __future__ import annotations

import struct
from typing import Any

import numpy as np

from ..errors import bad_request

HEADER = "inference-header-content-length"
OCTETS = "application/octet-stream"
NUMPY_TYPES = {
    "BOOL": "?", "INT8": "<i1", "INT16": "<i2", "INT32": "<i4", "INT64": "<i8",
    "UINT8": "<u1", "UINT16": "<u2", "UINT32": "<u4", "UINT64": "<u8",
    "FP16": "<f2", "FP32": "<f4", "FP64": "<f8",
}
DATATYPES = (*NUMPY_TYPES, "BYTES")


def split(body: bytes, header_length: str) -> tuple[bytes, bytes]:
    """The JSON header and the binary tensor data after it."""
    try:
        length = int(header_length)
    except ValueError:
        raise bad_request(f"Inference-Header-Content-Length must be a number of bytes, not {header_length[:40]!r}") from None
    if not 0 < length <= len(body):
        raise bad_request(f"Inference-Header-Content-Length is {length} but the body has {len(body)} bytes")
    return body[:length], body[length:]


def decode(name: str, datatype: str, raw: bytes) -> list[Any]:
    """One tensor's raw bytes as a flat list of Python values (BYTES elements stay bytes)."""
    if datatype == "BYTES":
        return byte_elements(name, raw)
    if datatype not in NUMPY_TYPES:
        raise bad_request(f"input '{name}': datatype {datatype[:20]!r} cannot be sent as binary data")
    dtype = np.dtype(NUMPY_TYPES[datatype])
    if len(raw) % dtype.itemsize:
        raise bad_request(f"input '{name}': {len(raw)} bytes is not a whole number of {datatype} elements")
    values: list[Any] = np.frombuffer(raw, dtype=dtype).tolist()
    return values


def byte_elements(name: str, raw: bytes) -> list[bytes]:
    out, offset = [], 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise bad_request(f"input '{name}': a BYTES element's 4-byte length is cut short")
        (size,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + size > len(raw):
            raise bad_request(f"input '{name}': a BYTES element of {size} bytes runs past the tensor's data")
        out.append(raw[offset:offset + size])
        offset += size
    return out


def encode(datatype: str, values: list[Any]) -> bytes:
    """A flat list of values as the extension's bytes for `datatype`."""
    if datatype == "BYTES":
        parts = [str(v).encode("utf-8") if not isinstance(v, bytes) else v for v in values]
        return b"".join(struct.pack("<I", len(p)) + p for p in parts)
    array = np.asarray([np.nan if v is None else v for v in values], dtype=np.dtype(NUMPY_TYPES[datatype]))
    return array.tobytes()
