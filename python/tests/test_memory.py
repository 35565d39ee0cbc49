"""MemoryMonitor and sizes against /proc and the C CLI."""
import json
import os
import subprocess

import pytest

import lowbit
from conftest import need


def meminfo(key):
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


def statm_rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_snapshot_against_proc():
    need("lb_memmon_open")
    with lowbit.MemoryMonitor() as mon:
        s = mon.snapshot()
        assert isinstance(s, lowbit.MemorySnapshot)
        assert s.sys_total == meminfo("MemTotal")
        assert s.sys_swap_total == meminfo("SwapTotal")
        assert 0 < s.sys_available <= s.sys_total and s.sys_free <= s.sys_total
        rss = statm_rss()
        assert 0.5 * rss < s.proc_rss < 2 * rss
        assert s.proc_peak_rss >= s.proc_rss * 0.9 and s.proc_vm_size >= s.proc_rss
        assert s.time_ns > 0 and mon.snapshot().time_ns >= s.time_ns
        assert isinstance(s.pressure, lowbit.MemoryPressure) and isinstance(s.pressure_reason, str)
        assert s.cgroup_limit is None or s.cgroup_limit > 0
        d = mon.snapshot(detailed=True)
        assert d.detailed_present and d.proc_pss > 0
        assert isinstance(mon.pressure(), lowbit.MemoryPressure)
        assert isinstance(mon.cgroup_path, str)
    with pytest.raises(ValueError):
        mon.snapshot()


def test_snapshot_equals_cli(cli):
    need("lb_memmon_open")
    r = subprocess.run([cli, "mem", "--json"], capture_output=True, timeout=60)
    if r.returncode != 0 and b"unknown" in r.stderr.lower():
        pytest.skip("this lowbit CLI has no mem command")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    with lowbit.MemoryMonitor() as mon:
        s = mon.snapshot()
        cgroup_path = mon.cgroup_path
    assert out["system"]["total"] == s.sys_total
    assert out["system"]["swap_total"] == s.sys_swap_total
    assert out["cgroup"]["present"] == s.cgroup_present and out["cgroup"]["limit"] == s.cgroup_limit
    assert out["cgroup"]["path"] == cgroup_path
    assert out["pressure"]["present"] == s.psi_present


def test_sizes():
    assert lowbit.parse_size(4096) == 4096
    assert lowbit.parse_size("6G") == 6 << 30
    assert lowbit.parse_size("1.5K") == 1536
    assert lowbit.parse_size("512MiB") == 512 << 20
    for bad in ("", "abc", "-1G", "0", "1.3B"):
        with pytest.raises(ValueError):
            lowbit.parse_size(bad)
    with pytest.raises(ValueError):
        lowbit.parse_size(0)
    with pytest.raises(TypeError):
        lowbit.parse_size(True)
    with pytest.raises(TypeError):
        lowbit.parse_size(2.5)
    need("lb_size_format")
    assert lowbit.format_size(3 << 30) == "3.00 GiB"
