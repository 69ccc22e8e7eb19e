"""Starting (or joining) Ray for a run."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator

import ray


@contextlib.contextmanager
def ray_session(address: str, num_cpus: int | None, object_store_mb: int) -> Iterator[None]:
    """Use the Ray already initialised in this process, else start one for the run.

    `address: local` starts an embedded Ray (token auth off: nothing outside this
    process talks to it); any other value connects to that cluster.
    """
    _quiet_ray_data()
    if ray.is_initialized():
        yield
        return
    if address == "local":
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        keep_idle_workers()
        ray.init(address="local", num_cpus=num_cpus,
                 object_store_memory=object_store_mb * 1024 * 1024, include_dashboard=False,
                 logging_level=logging.WARNING, log_to_driver=True)
    else:
        ray.init(address=address, logging_level=logging.WARNING)
    try:
        yield
    finally:
        ray.shutdown()


def keep_idle_workers() -> None:
    """Keep idle Ray workers alive for the run instead of killing them after 1 s.

    A pipeline's phases are separated by driver work (gathering side records, a resolve
    stage), long enough for Ray's default to kill the idle workers; each later phase paid
    ~2 s to start and import into a fresh worker (measured: 7 such gaps in a 100k-doc
    MinHash run). Read by the raylet at start, so set before `ray.init`; a value the
    user exported wins.
    """
    os.environ.setdefault("RAY_idle_worker_killing_time_threshold_ms", str(30 * 60 * 1000))


def _quiet_ray_data() -> None:
    """Ray Data logs a progress report every few seconds; curate shows its own progress."""
    from ray.data import DataContext

    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    # Ray Data reserves a share of the CPUs for every operator of a running dataset; on a
    # 2-core node that left the signature map of dedup.minhash one task at a time while
    # the sort behind it waited for input. Our stages run one after another anyway.
    ctx.op_resource_reservation_enabled = False
    for name in ("ray.data", "ray.data._internal.execution.streaming_executor"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # A failing task's traceback: curate reports the cause in one line and keeps the
    # whole traceback in the run's error.log.
    for name in ("ray.data._internal.execution.streaming_executor_state", "ray.data.exceptions"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    for name, text in _EXPECTED_WARNINGS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropMessage) for f in logger.filters):
            logger.addFilter(_DropMessage(text))


# Warnings that are wrong or expected for curate: progress bars are off on purpose, and
# the "no available CPUs" check fires whenever the fractional-CPU actor pool of a model
# step holds the CPUs at the moment a dataset starts, which then completes normally.
_EXPECTED_WARNINGS = [
    ("ray.data._internal.progress", "Progress bars disabled"),
    ("ray.data.dataset", "The Dataset job will hang unless more CPUs"),
]


class _DropMessage(logging.Filter):
    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()
