"""A Ray worker process killed mid-run: the task is retried, no row lost or duplicated."""

from __future__ import annotations

import os
import signal
import threading
import time

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from curate.recipe import parse_recipe
from operators.base import BatchResult, MapOperator
from pipelines.runner import run
from tests.conftest import write_parquet

pytestmark = pytest.mark.ray


def make_slow_op(params):
    class SlowDrop(MapOperator):
        """Sleeps per batch (a window to kill it in) and drops ids ending in 7."""

        name = "test.slow_drop"
        doc = "slow"
        reasons = ("ends_in_7",)

        def process(self, batch: pa.Table) -> BatchResult:
            time.sleep(0.2)
            hit = pc.ends_with(batch["id"], "7")
            none = pa.scalar(None, pa.string())
            return BatchResult(batch, pc.if_else(hit, "ends_in_7", none),
                               pc.if_else(hit, "id ends in 7", none))

    return SlowDrop(params)


def kill_a_busy_worker(marker: str, killed: list[int], stop: threading.Event) -> None:
    """SIGKILL the first Ray task process whose title shows it running `marker`, re-checked
    just before the kill. Actor-pool workers (`ray::MapWorker(...)`) of earlier tests may
    still be shutting down, so they never match."""
    import psutil

    def busy(cmd: str) -> bool:
        return cmd.startswith("ray::") and marker in cmd and "MapWorker" not in cmd

    while not stop.is_set():
        for proc in psutil.process_iter(["pid", "cmdline"]):
            if proc.pid == os.getpid() or not busy(" ".join(proc.info["cmdline"] or [])):
                continue
            time.sleep(0.3)  # let it get into a batch
            try:
                if not busy(" ".join(proc.cmdline())):
                    continue  # the task ended meanwhile: look for another
                os.kill(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, psutil.NoSuchProcess):
                continue
            killed.append(proc.pid)
            return
        time.sleep(0.05)


def test_killed_worker_loses_and_duplicates_nothing(ray_session, tmp_path):
    for s in range(4):
        write_parquet(tmp_path / "in" / f"part-{s}.parquet",
                      [{"id": f"s{s}-{i:03d}", "text": f"row {i} of shard {s}"}
                       for i in range(120)])
    text = (f"name: t\ninput: {{path: '{tmp_path}/in/*.parquet', batch_rows: 15}}\n"
            "output: {path: OUT, rows_per_shard: 50}\nsteps:\n  - op: text.normalize\n")

    def once(out: str):
        loaded = parse_recipe(text.replace("OUT", out))
        return run(loaded.recipe.run_spec(text), [make_slow_op(loaded.operators[0].params)])

    calm = once(str(tmp_path / "calm"))
    killed: list[int] = []
    stop = threading.Event()
    killer = threading.Thread(target=kill_a_busy_worker, args=("MapStep", killed, stop))
    killer.start()
    try:
        faulted = once(str(tmp_path / "faulted"))
    finally:
        stop.set()
        killer.join()

    assert killed, "no worker was killed: the test did not exercise a failure"
    assert faulted.ops == [dict(r, seconds=faulted.ops[i]["seconds"])
                           for i, r in enumerate(calm.ops)]
    assert faulted.ops[1]["rows_in"] == 480 and faulted.ops[1]["rows_dropped"] == 48
    calm_files = sorted((tmp_path / "calm").glob("part-*.parquet"))
    faulted_files = sorted((tmp_path / "faulted").glob("part-*.parquet"))
    assert [p.name for p in calm_files] == [p.name for p in faulted_files]
    assert all(a.read_bytes() == b.read_bytes()
               for a, b in zip(calm_files, faulted_files, strict=True))
