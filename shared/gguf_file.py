"""What Ladder reads of a GGUF file before an engine loads it: its metadata and its extent.

The registry reads a GGUF model's header when its folder is resolved (the API does, on each
request for it), so a file that is not GGUF, or was cut short by a copy, is refused with a
reason before any worker tries it. The `gguf` package's own reader parses every vocabulary
entry into numpy (7 s for SmolLM2); this one skips arrays and reads only what Ladder uses,
in milliseconds, and caches it per file version.

Format: https://github.com/ggml-org/ggml/blob/master/docs/gguf.md (version 2 and 3).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, BinaryIO

MAGIC = b"GGUF"
# Sizes in bytes of the scalar value types, by their GGUF type id.
SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q",
           12: "d"}  # fmt: skip
STRING, ARRAY = 8, 9
MAX_COUNT = 10_000_000
"""More key-values, tensors or array items than this is not a model, it is a hostile file."""
MAX_STRING = 1 << 26


class BadGguf(ValueError):
    """The file is not a GGUF model Ladder can serve; the message says why."""


@dataclass(frozen=True)
class GgufInfo:
    """A GGUF model file as its header describes it."""

    size: int
    file_type: str
    """How its weights are stored, as llama.cpp names it: Q4_0, Q4_1, Q8_0, Q4_K_M, F16…"""
    metadata: dict[str, Any]
    """The scalar key-values (arrays, such as the vocabulary, are skipped)."""
    lengths: dict[str, int]
    """How many items each array holds (tokenizer.ggml.tokens: the vocabulary's size)."""

    def number(self, key: str, default: int = 0) -> int:
        """An architecture's integer hyperparameter, e.g. number("block_count")."""
        arch = self.metadata.get("general.architecture", "")
        value = self.metadata.get(f"{arch}.{key}", default)
        return int(value) if isinstance(value, int | float) else default


def read(path: Path) -> GgufInfo:
    """The file's header, or BadGguf saying what is wrong with it."""
    try:
        stat = path.stat()
    except OSError as exc:
        raise BadGguf(f"cannot read {path.name}: {exc.strerror}") from None
    return _read(path, stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=64)
def _read(path: Path, mtime_ns: int, size: int) -> GgufInfo:
    del mtime_ns  # part of the cache key only: a replaced file is read again
    try:
        with path.open("rb") as f:
            return _parse(f, size)
    except OSError as exc:
        raise BadGguf(f"cannot read {path.name}: {exc.strerror}") from None
    except (struct.error, UnicodeDecodeError, EOFError):
        raise BadGguf(f"{path.name} ends inside its header: the file is truncated") from None


def _parse(f: BinaryIO, size: int) -> GgufInfo:
    if f.read(4) != MAGIC:
        raise BadGguf("not a GGUF file (it does not begin with 'GGUF')")
    version, tensors, kvs = struct.unpack("<IQQ", _exact(f, 20))
    if version not in (2, 3):
        raise BadGguf(f"GGUF version {version}; Ladder reads versions 2 and 3")
    if tensors > MAX_COUNT or kvs > MAX_COUNT:
        raise BadGguf(f"implausible header: {tensors} tensors, {kvs} key-values")
    metadata: dict[str, Any] = {}
    lengths: dict[str, int] = {}
    for _ in range(kvs):
        key = _string(f)
        kind = _u32(f)
        value = _value(f, kind)
        if kind == ARRAY:
            lengths[key] = value
        else:
            metadata[key] = value
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType, LlamaFileType

    end = 0
    for _ in range(tensors):
        name = _string(f)
        dims = _u32(f)
        if dims > 8:
            raise BadGguf(f"tensor {name} has {dims} dimensions")
        shape = struct.unpack(f"<{dims}Q", _exact(f, 8 * dims))
        kind, offset = struct.unpack("<IQ", _exact(f, 12))
        try:
            block, block_bytes = GGML_QUANT_SIZES[GGMLQuantizationType(kind)]
        except (ValueError, KeyError):
            raise BadGguf(f"tensor {name} has an unknown type {kind}") from None
        count = 1
        for n in shape:
            count *= n
        end = max(end, offset + count // block * block_bytes)
    alignment = int(metadata.get("general.alignment", 32)) or 32
    start = -(-f.tell() // alignment) * alignment
    if start + end > size:
        raise BadGguf(
            f"the file is truncated: its tensors end at byte {start + end:,}, the file has {size:,}"
        )
    if "general.architecture" not in metadata:
        raise BadGguf("the file names no architecture (general.architecture)")
    try:
        file_type = LlamaFileType(int(metadata.get("general.file_type", -1))).name
    except ValueError:
        file_type = "unknown"
    file_type = file_type.removeprefix("MOSTLY_").removeprefix("ALL_")
    return GgufInfo(size, file_type, metadata, lengths)


def _value(f: BinaryIO, kind: int) -> Any:
    if kind in SCALARS:
        code = SCALARS[kind]
        return struct.unpack("<" + code, _exact(f, struct.calcsize(code)))[0]
    if kind == STRING:
        return _string(f)
    if kind == ARRAY:
        item, count = struct.unpack("<IQ", _exact(f, 12))
        if count > MAX_COUNT or item == ARRAY:
            raise BadGguf(f"implausible array of {count} items of type {item}")
        if item in SCALARS:  # skipped, not read
            f.seek(count * struct.calcsize(SCALARS[item]), 1)
        elif item == STRING:
            for _ in range(count):
                f.seek(struct.unpack("<Q", _exact(f, 8))[0], 1)
        else:
            raise BadGguf(f"unknown value type {item} in an array of the header")
        return count
    raise BadGguf(f"unknown value type {kind} in the header")


def _string(f: BinaryIO) -> str:
    (length,) = struct.unpack("<Q", _exact(f, 8))
    if length > MAX_STRING:
        raise BadGguf(f"implausible string of {length} bytes in the header")
    return _exact(f, length).decode("utf-8")


def _u32(f: BinaryIO) -> int:
    (value,) = struct.unpack("<I", _exact(f, 4))
    return int(value)


def _exact(f: BinaryIO, n: int) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise EOFError
    return data
