"""Peak resident memory of a local Spark job: the driver Python, its JVM and the Python workers.

A background thread walks this process's descendants every ``interval_s`` (``psutil``) and keeps, per
kind, the peak of the kind's total and of its largest single process. Only descendants are looked at,
so Spark sessions of other processes on the machine (a test suite, another benchmark) are not counted.
Kinds: ``driver_python`` (this process), ``jvm`` (the driver JVM, which holds the local executor),
``daemon`` (``pyspark.daemon`` parents) and ``worker`` (the Python workers they fork). RSS counts shared
pages in every process, so a kind's sum over forked workers overstates what they use together.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psutil

KINDS = ("driver_python", "jvm", "daemon", "worker")
GIB = 2**30


def classify(proc: psutil.Process, me: int) -> str | None:
    """The kind of one process (None: not part of the Spark job, e.g. a shell)."""
    if proc.pid == me:
        return "driver_python"
    try:
        cmdline = " ".join(proc.cmdline())
        name = proc.name()
        if "pyspark.daemon" in cmdline or "pyspark.worker" in cmdline:
            parent = proc.parent()
            parent_cmd = " ".join(parent.cmdline()) if parent is not None else ""
            return "worker" if "pyspark.daemon" in parent_cmd else "daemon"
        if name == "java" or cmdline.split(" ", 1)[0].endswith("/java"):
            return "jvm"
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None
    return None


@dataclass
class MemoryPeaks:
    """Peaks in bytes: of each kind's total, of its largest process, of everything at one instant."""

    total: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    single: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    processes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    all_total: int = 0
    cpu_s: dict[str, float] = field(default_factory=lambda: dict.fromkeys(KINDS, 0.0))
    samples: int = 0
    seconds: float = 0.0
    workers_at_start: set[int] = field(default_factory=set)
    workers_seen: set[int] = field(default_factory=set)

    def add(self, rss: dict[str, list[int]]) -> None:
        """Fold in one sample: RSS of each process by kind."""
        for kind, values in rss.items():
            self.total[kind] = max(self.total[kind], sum(values))
            self.single[kind] = max(self.single[kind], max(values, default=0))
            self.processes[kind] = max(self.processes[kind], len(values))
        self.all_total = max(self.all_total, sum(sum(v) for v in rss.values()))
        self.samples += 1

    def as_dict(self) -> dict[str, Any]:
        """GiB figures for the results JSON."""
        out: dict[str, Any] = {
            "peak_total_gib": round(self.all_total / GIB, 3),
            "peak_driver_python_gib": round(self.total["driver_python"] / GIB, 3),
            "peak_jvm_gib": round(self.total["jvm"] / GIB, 3),
            "peak_worker_max_gib": round(self.single["worker"] / GIB, 3),
            "peak_workers_sum_gib": round(self.total["worker"] / GIB, 3),
            "peak_daemons_sum_gib": round(self.total["daemon"] / GIB, 3),
            "max_workers_seen": self.processes["worker"],
            "workers_started": len(self.workers_seen - self.workers_at_start),
            "cpu_s": {kind: round(value, 2) for kind, value in self.cpu_s.items()},
            "samples": self.samples,
            "seconds": round(self.seconds, 2),
        }
        return out


class TreeSampler:
    """Samples the RSS of this process and its descendants in a background thread."""

    def __init__(self, interval_s: float = 0.1) -> None:
        self.interval_s = interval_s
        self._me = os.getpid()
        self._root = psutil.Process(self._me)
        self._stop = threading.Event()
        self._kinds: dict[int, str | None] = {}
        self._cpu: dict[int, float] = {}

    def sample(self) -> dict[str, list[int]]:
        """RSS of every process of the job right now, by kind (and each one's CPU seconds so far)."""
        out: dict[str, list[int]] = {kind: [] for kind in KINDS}
        procs = [self._root, *self._root.children(recursive=True)]
        for proc in procs:
            if proc.pid not in self._kinds or self._kinds[proc.pid] is None:
                self._kinds[proc.pid] = classify(proc, self._me)
            kind = self._kinds[proc.pid]
            if kind is None:
                continue
            try:
                out[kind].append(proc.memory_info().rss)
                times = proc.cpu_times()
                self._cpu[proc.pid] = times.user + times.system
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
        return out

    def pids(self, kind: str) -> set[int]:
        """Every process of ``kind`` sampled so far (alive or not)."""
        return {pid for pid, k in self._kinds.items() if k == kind}

    @contextmanager
    def watch(self) -> Iterator[MemoryPeaks]:
        """Track the peaks while the block runs; the yielded object is filled in when it ends."""
        peaks = MemoryPeaks()
        peaks.add(self.sample())
        baseline = dict(self._cpu)
        peaks.workers_at_start = self.pids("worker")
        start = time.perf_counter()

        def loop() -> None:
            while not self._stop.wait(self.interval_s):
                peaks.add(self.sample())

        thread = threading.Thread(target=loop, daemon=True, name="rss-sampler")
        thread.start()
        try:
            yield peaks
        finally:
            self._stop.set()
            thread.join()
            self._stop.clear()
            peaks.add(self.sample())
            peaks.seconds = time.perf_counter() - start
            peaks.workers_seen = self.pids("worker")
            # CPU used during the block: processes that exited count up to their last sample.
            for pid, cpu in self._cpu.items():
                kind = self._kinds.get(pid)
                if kind is not None:
                    peaks.cpu_s[kind] += max(0.0, cpu - baseline.get(pid, 0.0))


def machine_info() -> dict[str, Any]:
    """CPU count, memory and the load average now (the machine may be shared: record it)."""
    load = os.getloadavg()
    return {
        "cpus": psutil.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / GIB, 1),
        "load_avg_1_5_15": [round(x, 2) for x in load],
    }
