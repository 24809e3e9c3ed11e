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


@functools.cache  # asked per batch and per request; a process keeps its limit
def usable_cpus(cgroup: Path = CGROUP) -> int:
    cpus = affinity_cpus()
    quota = cpu_quota(cgroup)
    return max(1, min(cpus, math.ceil(quota))) if quota else cpus


def affinity_cpus() -> int:
    """The CPUs the process may run on (what OpenMP and os.cpu_count-minded code see)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def cpu_quota(cgroup: Path = CGROUP) -> float | None:
    """The CPUs the cgroup's quota allows (1.5 for --cpus 1.5), or None without a quota."""
    try:  # cgroup v2: "max 100000" or "150000 100000"
        quota, _, period = (cgroup / "cpu.max").read_text().strip().partition(" ")
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:  # cgroup v1: a quota of -1 is none
        quota_us = int((cgroup / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((cgroup / "cpu" / "cpu.cfs_period_us").read_text())
        return quota_us / period_us if quota_us > 0 and period_us > 0 else None
    except (OSError, ValueError):
        return None
