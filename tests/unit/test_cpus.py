"""The CPUs a process may use: affinity, capped by a cgroup quota (v2 cpu.max, v1 cfs files)."""

from __future__ import annotations

import math
import os

import pytest

from mljobs.cpus import cpu_quota, usable_cpus


@pytest.mark.parametrize("files, quota", [
    ({"cpu.max": "150000 100000\n"}, 1.5),
    ({"cpu.max": "max 100000\n"}, None),
    ({"cpu/cpu.cfs_quota_us": "50000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 0.5),
    ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
    ({}, None),
], ids=["v2-limit", "v2-none", "v1-limit", "v1-none", "no-cgroup"])
def test_the_quota_is_read_from_either_cgroup_version(tmp_path, files, quota):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert cpu_quota(tmp_path) == quota
    affinity = len(os.sched_getaffinity(0))
    assert usable_cpus(tmp_path) == (max(1, min(affinity, math.ceil(quota))) if quota else affinity)
