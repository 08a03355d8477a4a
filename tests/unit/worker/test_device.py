"""Reading how much memory a worker may take: MemAvailable, or a container's cgroup limit."""

from __future__ import annotations

from pathlib import Path

from worker.device import cgroup_headroom, peak_rss_bytes, reset_peak_rss

GB = 1 << 30


def write(folder: Path, **files: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name.replace("_", ".", 1)).write_text(text)


def test_v2_takes_the_tightest_ancestor_and_leaves_out_droppable_page_cache(tmp_path: Path) -> None:
    membership = tmp_path / "cgroup"
    membership.write_text("0::/ladder/worker\n")
    root = tmp_path / "fs"
    write(root, memory_max="max", memory_current=str(20 * GB))
    write(root / "ladder", memory_max=str(8 * GB), memory_current=str(5 * GB),
          memory_stat="anon 1\ninactive_file 0\n")  # fmt: skip
    write(root / "ladder" / "worker", memory_max=str(16 * GB), memory_current=str(4 * GB),
          memory_stat=f"anon 1\ninactive_file {GB}\n")  # fmt: skip
    # The worker's own cgroup leaves 16 - (4 - 1) = 13 GB; its parent only 8 - 5 = 3 GB.
    assert cgroup_headroom(root, membership) == 3 * GB


def test_v1_reads_the_hierarchical_limit(tmp_path: Path) -> None:
    membership = tmp_path / "cgroup"
    membership.write_text("5:cpu:/\n4:memory:/docker/abc\n0::/\n")
    folder = tmp_path / "fs" / "memory" / "docker" / "abc"
    stat = f"hierarchical_memory_limit {6 * GB}\ntotal_inactive_file {GB}\n"
    write(folder, memory_limit_in_bytes=str(1 << 62), memory_usage_in_bytes=str(3 * GB),
          memory_stat=stat)  # fmt: skip
    assert cgroup_headroom(tmp_path / "fs", membership) == 4 * GB


def test_no_limit_anywhere_means_no_headroom_figure(tmp_path: Path) -> None:
    membership = tmp_path / "cgroup"
    membership.write_text("4:memory:/\n0::/\n")
    write(tmp_path / "fs" / "memory", memory_limit_in_bytes="9223372036854771712",
          memory_usage_in_bytes=str(GB))  # fmt: skip
    write(tmp_path / "fs", memory_max="max", memory_current=str(GB))
    assert cgroup_headroom(tmp_path / "fs", membership) is None


def test_peak_rss_can_be_counted_afresh() -> None:
    ballast = bytearray(64 << 20)
    for i in range(0, len(ballast), 4096):
        ballast[i] = 1
    before = peak_rss_bytes()
    del ballast
    if reset_peak_rss():
        assert peak_rss_bytes() < before - (32 << 20)
