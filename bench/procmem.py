"""Memory of a process tree (a gunicorn master and its workers) read from /proc.

RSS counts every resident page a process maps, shared or not, so the RSS of a master and its
forked workers added up counts a shared page once per process. A cgroup memory limit (a pod's
``resources.limits.memory``) charges each page once, to the cgroup that faulted it in. PSS
(``smaps_rollup``) divides each shared page between the processes sharing it, so the PSS sum of
a tree is close to what the tree costs the machine once. Both are reported.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.servers import children_of


def _kib_field(text: str, name: str) -> int | None:
    for line in text.splitlines():
        if line.startswith(name):
            return int(line.split()[1])
    return None


def rss_pss_kib(pid: int) -> tuple[int, int] | None:
    """(RSS, PSS) of one process in KiB, or None when it is gone."""
    try:
        rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return None
    rss = _kib_field(rollup, "Rss:")
    pss = _kib_field(rollup, "Pss:")
    if rss is None or pss is None:
        return None
    return rss, pss


@dataclass
class TreeSample:
    master_rss: int = 0
    master_pss: int = 0
    workers_rss: list[int] = field(default_factory=list)
    workers_pss: list[int] = field(default_factory=list)

    @property
    def rss_sum(self) -> int:
        return self.master_rss + sum(self.workers_rss)

    @property
    def pss_sum(self) -> int:
        return self.master_pss + sum(self.workers_pss)


def sample_tree(master: int) -> TreeSample | None:
    top = rss_pss_kib(master)
    if top is None:
        return None
    sample = TreeSample(master_rss=top[0], master_pss=top[1])
    for child in children_of(master):
        figures = rss_pss_kib(child)
        if figures is not None:
            sample.workers_rss.append(figures[0])
            sample.workers_pss.append(figures[1])
    return sample


class PeakSampler:
    """Samples a process tree every ``interval`` seconds in a thread; keeps the peaks (KiB).

    Use as a context manager around a load run. Peaks are taken of the sums (the figure a
    limit is compared with), and separately of the master and of the largest worker.
    """

    def __init__(self, master: int, interval: float = 0.25) -> None:
        self.master = master
        self.interval = interval
        self.peak_rss_sum = 0
        self.peak_pss_sum = 0
        self.peak_master_rss = 0
        self.peak_worker_rss = 0
        self.workers_seen = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="mem-sampler")

    def _take(self) -> None:
        sample = sample_tree(self.master)
        if sample is None:
            return
        self.samples += 1
        self.peak_rss_sum = max(self.peak_rss_sum, sample.rss_sum)
        self.peak_pss_sum = max(self.peak_pss_sum, sample.pss_sum)
        self.peak_master_rss = max(self.peak_master_rss, sample.master_rss)
        self.peak_worker_rss = max(self.peak_worker_rss, *sample.workers_rss, 0)
        self.workers_seen = max(self.workers_seen, len(sample.workers_rss))

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._take()
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakSampler:
        self._take()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._take()


def mib(kib: int) -> float:
    return kib / 1024


def wait_for_workers(master: int, count: int, timeout: float = 30) -> list[int]:
    deadline = time.monotonic() + timeout
    while True:
        workers = children_of(master)
        if len(workers) >= count:
            return workers
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(workers)} of {count} workers after {timeout}s")
        time.sleep(0.05)
