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
    if ray.is_initialized():
        yield
        return
    if address == "local":
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        ray.init(num_cpus=num_cpus, object_store_memory=object_store_mb * 1024 * 1024,
                 include_dashboard=False, logging_level=logging.WARNING,
                 configure_logging=True, log_to_driver=True)
    else:
        ray.init(address=address, logging_level=logging.WARNING)
    try:
        yield
    finally:
        ray.shutdown()


