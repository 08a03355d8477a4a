"""What the kernel says about this machine's memory and this process's size (Linux /proc and
the memory cgroup a container runs in)."""

from __future__ import annotations

from pathlib import Path


def meminfo() -> dict[str, int]:
    """/proc/meminfo in bytes: MemTotal, MemAvailable, …; empty where it cannot be read."""
    try:
        with open("/proc/meminfo") as lines:
            fields = dict(line.split(":", 1) for line in lines)
        return {name: int(value.split()[0]) * 1024 for name, value in fields.items()}
    except (OSError, ValueError):
        return {}


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096


CGROUP_ROOT = Path("/sys/fs/cgroup")
MEMBERSHIP = Path("/proc/self/cgroup")


def available_bytes() -> int | None:
    """Memory this process may still take: the kernel's MemAvailable, or less where a cgroup
    (a container's memory limit, v2 or v1) leaves less. None where neither can be read."""
    found = [n for n in (meminfo().get("MemAvailable"), cgroup_headroom()) if n is not None]
    return min(found) if found else None


def cgroup_headroom(root: Path = CGROUP_ROOT, membership: Path = MEMBERSHIP) -> int | None:
    """Bytes left under this process's memory cgroup limit (the tightest of its ancestors' in
    v2, the hierarchical limit in v1), not counting page cache the kernel may drop; None where
    no limit is set or none can be read."""
    try:
        lines = membership.read_text().splitlines()
    except OSError:
        return None
    headrooms = []
    for line in lines:
        hierarchy, controllers, path = line.split(":", 2)
        if hierarchy == "0" and not controllers:
            headrooms.append(_v2_headroom(root, path))
        elif "memory" in controllers.split(","):
            headrooms.append(_v1_headroom(root / "memory", path))
    limited = [h for h in headrooms if h is not None]
    return min(limited) if limited else None


def _v2_headroom(root: Path, path: str) -> int | None:
    here = _own_folder(root, path, "memory.max")
    if here is None:
        return None
    headrooms = []
    folder = here
    while folder.is_relative_to(root) and (folder / "memory.max").exists():
        limit = _number(folder / "memory.max")
        if limit is not None:
            in_use = (_number(folder / "memory.current") or 0) - _stat(folder, "inactive_file")
            headrooms.append(limit - max(0, in_use))
        folder = folder.parent
    return max(0, min(headrooms)) if headrooms else None


def _v1_headroom(root: Path, path: str) -> int | None:
    folder = _own_folder(root, path, "memory.limit_in_bytes")
    if folder is None:
        return None
    limit = _stat(folder, "hierarchical_memory_limit") or _number(folder / "memory.limit_in_bytes")
    if limit is None or limit >= 1 << 60:  # v1 writes "no limit" as a huge number
        return None
    in_use = (_number(folder / "memory.usage_in_bytes") or 0) - _stat(folder, "total_inactive_file")
    return max(0, limit - max(0, in_use))


def _own_folder(root: Path, path: str, probe: str) -> Path | None:
    """The cgroup's folder; inside a container its own cgroup is often the mount's root."""
    for folder in (root / path.lstrip("/"), root):
        if (folder / probe).exists():
            return folder
    return None


def _number(file: Path) -> int | None:
    """A cgroup file's integer; None for "max" (no limit) or where it cannot be read."""
    try:
        text = file.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _stat(folder: Path, name: str) -> int:
    try:
        for line in (folder / "memory.stat").read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == name and value.strip().isdigit():
                return int(value)
    except OSError:
        pass
    return 0


def reset_peak_rss() -> bool:
    """Start counting this process's peak RSS afresh (Linux: clear_refs 5); False if denied."""
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
    except OSError:
        return False
    return True


def peak_rss_bytes() -> int:
    """The process's peak RSS (VmHWM) since it began or since `reset_peak_rss`."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0
