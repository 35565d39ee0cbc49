"""Memory monitor, pressure levels and sizes (C: src/mem, lb_memmon_* in lowbit.h)."""
import ctypes
import dataclasses
import enum
import numbers
import re

from . import _lib


class MemoryPressure(enum.IntEnum):
    """lb_mem_pressure: the highest level any signal (available memory, cgroup working set,
    PSI) reaches."""
    NONE = 0
    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4

    def __str__(self):
        return self.name.lower()


@dataclasses.dataclass(frozen=True)
class PsiAvg:
    avg10: float
    avg60: float
    avg300: float


@dataclasses.dataclass(frozen=True)
class MemorySnapshot:
    """lb_mem_snapshot; byte counts in bytes. cgroup_limit is None when unlimited; *_present say
    whether a source exists (fields of a missing source are 0)."""
    time_ns: int
    sys_total: int
    sys_available: int
    sys_free: int
    sys_cached: int
    sys_swap_total: int
    sys_swap_free: int
    cgroup_present: bool
    cgroup_version: int
    cgroup_limit: object  # int, or None when unlimited
    cgroup_usage: int
    cgroup_peak_present: bool
    cgroup_peak: int
    cgroup_stat_present: bool
    cgroup_anon: int
    cgroup_file: int
    cgroup_inactive_file: int
    psi_present: bool
    psi_some: PsiAvg
    psi_full: PsiAvg
    proc_rss: int
    proc_anon: int
    proc_file: int
    proc_peak_rss: int
    proc_vm_size: int
    detailed_present: bool
    proc_shmem: int
    proc_swap: int
    proc_hwm: int
    proc_pss: int
    proc_pss_anon: int
    proc_pss_file: int
    proc_pss_shmem: int
    proc_private_dirty: int
    proc_locked: int
    pressure: MemoryPressure
    pressure_reason: str


_UNLIMITED = 2 ** 64 - 1


def _to_dataclass(c, level, reason):
    vals = {}
    for f in dataclasses.fields(MemorySnapshot):
        if f.name in ("pressure", "pressure_reason"):
            continue
        v = getattr(c, f.name)
        if isinstance(v, _lib.PsiAvg):
            v = PsiAvg(v.avg10, v.avg60, v.avg300)
        elif f.name.endswith("_present"):
            v = bool(v)
        vals[f.name] = v
    if vals["cgroup_limit"] == _UNLIMITED or not vals["cgroup_present"]:
        vals["cgroup_limit"] = None
    return MemorySnapshot(pressure=level, pressure_reason=reason, **vals)


class MemoryMonitor(_lib.Handle):
    """System, cgroup, PSI and process memory, read by the C monitor. Not thread-safe (like the
    C handle): one monitor per thread."""
    _FREE = "lb_memmon_close"

    def __init__(self):
        lib = _lib.lib()
        _lib.require("lb_memmon_open", "MemoryMonitor")
        h = ctypes.c_void_p()
        _lib.call(lib.lb_memmon_open, ctypes.byref(h))
        self._h = h

    def _handle(self):
        if not self._h:
            raise ValueError("MemoryMonitor is closed")
        return self._h

    def _raw(self, detailed):
        lib = _lib.lib()
        s = _lib.MemSnapshot()
        fn = lib.lb_memmon_snapshot_detailed if detailed else lib.lb_memmon_snapshot
        _lib.call(fn, self._handle(), ctypes.byref(s))
        return s

    @staticmethod
    def _level(s):
        lib = _lib.lib()
        level = MemoryPressure(lib.lb_mem_pressure_level(ctypes.byref(s)))
        buf = ctypes.create_string_buffer(256)
        lib.lb_mem_pressure_reason(ctypes.byref(s), buf, len(buf))
        return level, buf.value.decode("utf-8", "replace")

    def snapshot(self, detailed=False):
        """A MemorySnapshot; detailed adds /proc/self/status and smaps_rollup (PSS, swap, locked)."""
        s = self._raw(detailed)
        return _to_dataclass(s, *self._level(s))

    def pressure(self):
        """The current MemoryPressure level (from a fresh snapshot)."""
        return self._level(self._raw(False))[0]

    @property
    def cgroup_path(self):
        """The cgroup directory the monitor reads ("" when none)."""
        return _lib.lib().lb_memmon_cgroup_path(self._handle()).decode("utf-8", "replace")


_UNITS = {"": 0, "B": 0, "K": 1, "M": 2, "G": 3, "T": 4, "P": 5}


def _parse_size_py(s):
    # used only with a library that predates lb_size_parse; same grammar (see lowbit.h)
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([BKMGTP]?)(I?B)?\s*", s, re.I)
    if not m or (m.group(2) == "" and m.group(3)) or (m.group(2).upper() == "B" and m.group(3)):
        raise ValueError("size %r: expected a number with an optional unit B, K, M, G, T, P" % s)
    v = float(m.group(1)) * 1024 ** _UNITS[m.group(2).upper()]
    if v != int(v) or v <= 0 or v > 1024 ** 5:
        raise ValueError("size %r: must be a whole number of bytes in 1 B .. 1 PiB" % s)
    return int(v)


def parse_size(size):
    """Bytes from an int or a string such as "6G" (binary units: 6G = 6 GiB)."""
    if isinstance(size, bool):
        raise TypeError("size: expected an int or a string such as '6G', got %r" % (size,))
    if isinstance(size, numbers.Integral):
        if size <= 0:
            raise ValueError("size: must be > 0, got %d" % size)
        return int(size)
    if not isinstance(size, str):
        raise TypeError("size: expected an int or a string such as '6G', got %r" % (size,))
    lib = _lib.lib()
    if not hasattr(lib, "lb_size_parse"):
        return _parse_size_py(size)
    out = ctypes.c_uint64()
    err = _lib.LbError()
    status = lib.lb_size_parse(size.encode(), ctypes.byref(out), ctypes.byref(err))
    if status:
        raise ValueError(err.msg.decode("utf-8", "replace") or "size %r: not a size" % size)
    return out.value


def format_size(n):
    """'3.56 GiB' (C lb_size_format)."""
    fn = _lib.require("lb_size_format", "format_size")
    buf = ctypes.create_string_buffer(64)
    return fn(int(n), buf, len(buf)).decode()
