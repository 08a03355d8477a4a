"""Loading registry models with transformers, offline, and keeping them per worker process."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from shared.model_registry import ModelEntry

# Nothing is ever downloaded at run time: transformers must not even try.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


class ModelError(Exception):
    """A model folder that cannot be used: bad weights, missing files, no attentions."""


@dataclass
class Loaded:
    """A model ready to run, with what the result reports about it."""

    entry: ModelEntry
    model: Any
    tokenizer: Any
    weights_sha256: str
    nbytes: int
    load_seconds: float


def tensor_bytes(tensor: Any) -> int:
    """Bytes a tensor holds, looking inside quantized tensor subclasses (torchao's int8 keeps
    int8 data and scales; its own element_size() reports the dequantized dtype)."""
    flatten = getattr(tensor, "__tensor_flatten__", None)
    if flatten is not None:
        names, _ = flatten()
        return sum(tensor_bytes(getattr(tensor, name)) for name in names)
    return int(tensor.numel() * tensor.element_size())


def model_bytes(model: Any) -> int:
    return sum(tensor_bytes(p) for p in model.parameters())


def weights_sha256(entry: ModelEntry) -> str:
    """The sha256 of the weights (of all safetensors files in order, when there are several)."""
    files = (
        [entry.gguf]
        if entry.gguf
        else [entry.path / entry.weights_file]
        if entry.weights_file
        else sorted(entry.path.glob("*.safetensors")) or sorted(entry.path.glob("*.bin"))
    )
    if not files:
        raise ModelError(f"model {entry.name!r} has no weights file")
    digest = hashlib.sha256()
    for file in files:
        with file.open("rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()


def load_encoder(entry: ModelEntry, device: str = "cpu") -> Loaded:
    """A model whose attentions can be read: eager attention, since SDPA returns none.
    `device` is a torch device: "cpu", or "cuda" on a GPU worker."""
    from transformers import AutoModel, AutoTokenizer

    started = time.perf_counter()
    sha256 = weights_sha256(entry)
    if entry.expected_sha256 and sha256 != entry.expected_sha256:
        raise ModelError(
            f"the weights of {entry.name!r} have sha256 {sha256}, not the pinned "
            f"{entry.expected_sha256}: refusing to load them"
        )
    path = str(entry.path)
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModel.from_pretrained(path, local_files_only=True, attn_implementation="eager")
    model.to(device).eval()
    nbytes = model_bytes(model)
    return Loaded(entry, model, tokenizer, sha256, nbytes, time.perf_counter() - started)


class Sized(Protocol):
    nbytes: int


T = TypeVar("T", bound=Sized)


class ModelCache:
    """Loaded models by name and purpose, least recently used out first, within a byte budget."""

    def __init__(self, budget_bytes: int) -> None:
        self.budget = budget_bytes
        self._models: OrderedDict[tuple[str, Path, str], Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, entry: ModelEntry, purpose: str, load: Callable[[ModelEntry], T]) -> T:
        key = (entry.name, entry.path, purpose)
        with self._lock:
            if key in self._models:
                self._models.move_to_end(key)
                found: T = self._models[key]
                return found
            loaded = load(entry)
            self._models[key] = loaded
            while len(self._models) > 1 and self.nbytes > self.budget:
                self._models.popitem(last=False)
            return loaded

    @property
    def nbytes(self) -> int:
        return sum(m.nbytes for m in self._models.values())


_cache: ModelCache | None = None


def cache(budget_bytes: int) -> ModelCache:
    """This process's cache (each prefork child has its own)."""
    global _cache  # noqa: PLW0603 - one cache per process is the point
    if _cache is None:
        _cache = ModelCache(budget_bytes)
    return _cache
