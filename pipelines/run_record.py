"""The run's own tables: `runs` and `ops` Parquet under OUT/_curate/runs/RUN_ID/.

Their schemas are in `pipelines.tables`, their paths in `pipelines.layout`.
"""

from __future__ import annotations

import hashlib
import platform
from datetime import datetime
from pathlib import Path

import pyarrow as pa

from pipelines import layout
from pipelines.spec import RunSpec
from pipelines.tables import OPS_SCHEMA, RUNS_SCHEMA
from pipelines.writer import atomic_write


def versions() -> str:
    from importlib.metadata import version

    names = ["curate", "ray", "pyarrow", "duckdb", "datasketch", "numpy"]
    return " ".join(f"{n}={version(n)}" for n in names) + f" python={platform.python_version()}"


def write_ops(run_dir: Path, run_id: str, ops: list[dict]) -> None:
    rows = [{"run_id": run_id, **r} for r in ops]
    atomic_write(pa.Table.from_pylist(rows, schema=OPS_SCHEMA), layout.ops_file(run_dir))


def write_run(run_dir: Path, spec: RunSpec, *, run_id: str, started: datetime,
              finished: datetime, status: str, error: str | None, rows_in: int | None,
              rows_out: int | None, resumed_from: int = 0) -> None:
    row = {
        "run_id": run_id, "recipe": spec.name,
        "recipe_sha": hashlib.sha256(spec.recipe_yaml.encode()).hexdigest(),
        "started": started, "finished": finished, "status": status, "error": error,
        "rows_in": rows_in, "rows_out": rows_out, "seed": spec.execution.seed,
        "input": spec.input.path, "versions": versions(),
        "resumed_from_step": resumed_from,
    }
    atomic_write(pa.Table.from_pylist([row], schema=RUNS_SCHEMA), layout.runs_file(run_dir))
