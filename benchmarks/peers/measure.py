"""Run a command and measure its whole process tree: wall, peak memory, CPU seconds.

Every 0.5 s the tree (the process and all its descendants: for `curate run` that is the
driver, GCS, raylet, dashboard agents and every Ray worker) is listed with psutil and the
RSS of its members summed; the peak of that sum is reported. RSS counts shared pages
(the Ray object store in /dev/shm, shared libraries) once per process that maps them, so
it over-states; every 4th sample also sums PSS (shared pages split between the processes
sharing them), which does not. CPU seconds: user+system of every process seen, at its
last sample, plus what waited-for children report on exit (whichever total is larger);
processes living under 0.5 s are missed. `psutil` is Ray's vendored copy (import ray).
"""

from __future__ import annotations

import os
import resource
import subprocess
import threading
import time
from pathlib import Path

try:
    import psutil
except ImportError:  # Ray vendors psutil; it is importable once ray is imported
    import importlib

    importlib.import_module("ray")
    psutil = importlib.import_module("psutil")


def _tree(root: psutil.Process) -> list[psutil.Process]:
    try:
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def run_measured(cmd: list[str] | str, *, env: dict | None = None, cwd: str | None = None,
                 log: Path | None = None, timeout: float | None = None,
                 interval: float = 0.5, timeline: bool = False) -> dict:
    """Run `cmd` to completion; returns wall_s, rc, peak_rss_mb, peak_pss_mb, cpu_s, load
    (and `timeline`: [seconds, RSS MB, processes] per sample, when asked)."""
    full_env = {**os.environ, **(env or {})}
    out = open(log, "w") if log else subprocess.DEVNULL  # noqa: SIM115
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=full_env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                            shell=isinstance(cmd, str))
    root = psutil.Process(proc.pid)
    cpu: dict[tuple[int, float], float] = {}
    peak_rss = peak_pss = 0
    loads = [load0]
    samples: list[list[float]] = []
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak_rss, peak_pss
        k = 0
        while not stop.is_set():
            rss = pss = 0
            members = _tree(root)
            for p in members:
                try:
                    with p.oneshot():
                        rss += p.memory_info().rss
                        t = p.cpu_times()
                        cpu[(p.pid, p.create_time())] = t.user + t.system
                    if k % 4 == 0:
                        pss += p.memory_full_info().pss
                except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                    pass
            peak_rss = max(peak_rss, rss)
            samples.append([round(time.perf_counter() - t0, 1), round(rss / 2**20), len(members)])
            if k % 4 == 0:
                peak_pss = max(peak_pss, pss)
                loads.append(os.getloadavg()[0])
            k += 1
            stop.wait(interval)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    try:
        rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        rc = proc.wait()
    wall = time.perf_counter() - t0
    stop.set()
    th.join()
    if log:
        out.close()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    reaped = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    res = {"wall_s": round(wall, 2), "rc": rc, "peak_rss_mb": round(peak_rss / 2**20, 1),
           "peak_pss_mb": round(peak_pss / 2**20, 1),
           "cpu_s": round(max(sum(cpu.values()), reaped), 2),
           "load_start": round(load0, 2), "load_max": round(max(loads), 2),
           "load_mean": round(sum(loads) / len(loads), 2)}
    if timeline:
        res["timeline"] = samples
    return res
