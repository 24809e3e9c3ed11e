"""How many CPUs this process may keep busy: its CPU affinity, capped by a cgroup CPU quota
(`docker run --cpus`, a Swarm or Kubernetes CPU limit), which neither os.cpu_count() nor the
affinity sees. Thread pools and worker counts are sized from it, so a replica limited to one CPU
on a 16-core node does not run 16 threads that the kernel then throttles."""

from __future__ import annotations

import functools
import math
import os
from pathlib import Path

CGROUP = Path("/sys/fs/cgroup")
MEMBERSHIP = Path("/proc/self/cgroup")


@functools.cache  # asked per batch and per request; a process keeps its limit
def usable_cpus(cgroup: Path = CGROUP, membership: Path = MEMBERSHIP) -> int:
    cpus = affinity_cpus()
    quota = cpu_quota(cgroup, membership)
    return max(1, min(cpus, math.ceil(quota))) if quota else cpus


def affinity_cpus() -> int:
    """The CPUs the process may run on (what OpenMP and os.cpu_count-minded code see)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def cpu_quota(cgroup: Path = CGROUP, membership: Path = MEMBERSHIP) -> float | None:
    """The CPUs the tightest quota allows (1.5 for --cpus 1.5), or None without one: the quota of
    the process's own cgroup or of any above it (a Kubernetes pod's limit, a systemd slice, a
    container sharing the host's cgroup namespace), as far up as the mount shows."""
    paths = _own_cgroups(membership)
    quotas = [q for folder in _upwards(cgroup, paths.get("")) if (q := _v2_quota(folder)) is not None]
    if not quotas:
        quotas = [q for folder in _upwards(cgroup / "cpu", paths.get("cpu")) if (q := _v1_quota(folder)) is not None]
    return min(quotas, default=None)


def _v2_quota(folder: Path) -> float | None:
    try:  # "max 100000" or "150000 100000"
        quota, _, period = (folder / "cpu.max").read_text().strip().partition(" ")
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        return None


def _v1_quota(folder: Path) -> float | None:
    try:  # a quota of -1 is none
        quota_us = int((folder / "cpu.cfs_quota_us").read_text())
        period_us = int((folder / "cpu.cfs_period_us").read_text())
        return quota_us / period_us if quota_us > 0 and period_us > 0 else None
    except (OSError, ValueError):
        return None


def _own_cgroups(membership: Path) -> dict[str, str]:
    """The process's cgroup path by controller ("" for the v2 hierarchy), from /proc/self/cgroup."""
    try:
        lines = membership.read_text().splitlines()
    except OSError:
        return {}
    paths = {}
    for line in lines:  # "0::/a/b" (v2), "4:cpu,cpuacct:/a/b" (v1)
        _, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        for controller in controllers.split(","):
            paths[controller] = path
    return paths


def _upwards(mount: Path, path: str | None) -> list[Path]:
    """The mount's folder for `path` and each above it, the mount itself last. Where the mount is
    the container's own cgroup (a private namespace, or cgroup v1 in Docker) the deeper folders
    are not there and only the mount's own files count."""
    parts = [p for p in (path or "").split("/") if p and p not in (".", "..")]
    return [mount.joinpath(*parts[:depth]) for depth in range(len(parts), -1, -1)]
