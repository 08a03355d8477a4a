"""A memory cgroup made for a test, as a container's memory limit would be (v2 or v1)."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")


def _own(hierarchy: str) -> Path | None:
    """This process's cgroup folder in a hierarchy ("0::" for v2, "memory" for v1)."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        number, controllers, path = line.split(":", 2)
        v2 = hierarchy == "" and number == "0" and not controllers
        if v2 or hierarchy in controllers.split(","):
            base = ROOT if v2 else ROOT / "memory"
            return base / path.lstrip("/")
    return None


def _v2_parent() -> Path | None:
    own = _own("")
    if own is None or not (own / "cgroup.controllers").exists():
        return None
    if "memory" not in (own / "cgroup.subtree_control").read_text().split():
        return None  # a child could not be limited; enabling it moves processes around
    return own


def _v1_parent() -> Path | None:
    own = _own("memory")
    return own if own is not None and (own / "memory.limit_in_bytes").exists() else None


@contextlib.contextmanager
def memory_cgroup(limit_bytes: int) -> Iterator[Path | None]:
    """A new child cgroup limited to `limit_bytes` (None where this machine allows none);
    `join(folder, pid)` moves a process into it. Removed afterwards."""
    parent, files = _v2_parent(), ("memory.max", "memory.swap.max")
    if parent is None:
        parent, files = _v1_parent(), ("memory.limit_in_bytes", "")
    if parent is None or not os.access(parent, os.W_OK):
        yield None
        return
    folder = parent / f"ladder-test-{uuid.uuid4().hex[:8]}"
    try:
        folder.mkdir()
        (folder / files[0]).write_text(str(limit_bytes))
        if files[1] and (folder / files[1]).exists():
            (folder / files[1]).write_text("0")
    except OSError:
        yield None
        return
    try:
        yield folder
    finally:
        with contextlib.suppress(OSError):
            folder.rmdir()


def join(folder: Path, pid: int) -> None:
    (folder / "cgroup.procs").write_text(str(pid))
