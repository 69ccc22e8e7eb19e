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
        ray.init(address="local", num_cpus=num_cpus,
                 object_store_memory=object_store_mb * 1024 * 1024, include_dashboard=False,
                 logging_level=logging.WARNING, log_to_driver=True)
    else:
        ray.init(address=address, logging_level=logging.WARNING)
    try:
        yield
    finally:
        ray.shutdown()




def _quiet_ray_data() -> None:
    """Ray Data logs a progress report every few seconds; curate shows its own progress."""
    from ray.data import DataContext

    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    for name in ("ray.data", "ray.data._internal.execution.streaming_executor"):
        logging.getLogger(name).setLevel(logging.WARNING)
