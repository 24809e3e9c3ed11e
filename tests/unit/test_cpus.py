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
    write(tmp_path, files)
    outside = tmp_path / "no-membership"  # (not this machine's /proc/self/cgroup)
    assert cpu_quota(tmp_path, outside) == quota
    affinity = len(os.sched_getaffinity(0))
    assert usable_cpus(tmp_path, outside) == (max(1, min(affinity, math.ceil(quota))) if quota else affinity)


def write(root, files):
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


@pytest.mark.parametrize("files, membership, quota", [
    ({"cpu.max": "max 100000\n", "pod/cpu.max": "100000 100000\n", "pod/app/cpu.max": "max 100000\n"}, "0::/pod/app\n", 1.0),
    ({"pod/cpu.max": "300000 100000\n", "pod/app/cpu.max": "150000 100000\n"}, "0::/pod/app\n", 1.5),
    ({"cpu.max": "50000 100000\n"}, "0::/docker/abc\n", 0.5),
    ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n",
      "cpu/slice/cpu.cfs_quota_us": "200000\n", "cpu/slice/cpu.cfs_period_us": "100000\n"}, "4:cpu,cpuacct:/slice/job\n", 2.0),
    ({"pod/cpu.max": "100000 100000\n"}, "0::/\n", None),
], ids=["v2-parent-limit", "v2-tightest-wins", "v2-namespaced-root", "v1-parent-limit", "v2-outside-the-limit"])
def test_a_quota_on_a_cgroup_above_the_process_counts_too(tmp_path, files, membership, quota):
    write(tmp_path / "fs", files)
    (tmp_path / "cgroup").write_text(membership)
    assert cpu_quota(tmp_path / "fs", tmp_path / "cgroup") == quota
