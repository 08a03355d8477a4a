"""What the kernel says about this machine's memory and this process's size (Linux /proc)."""

from __future__ import annotations


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
