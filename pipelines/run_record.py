"""The run's own tables: `runs` and `ops` Parquet under OUT/_curate/runs/RUN_ID/."""

from __future__ import annotations

import hashlib
import platform
from datetime import datetime
from pathlib import Path

import pyarrow as pa

from pipelines.writer import atomic_write

OPS_SCHEMA = pa.schema([
    ("run_id", pa.string()), ("step", pa.int16()), ("op", pa.string()), ("name", pa.string()),
    ("rows_in", pa.int64()), ("rows_out", pa.int64()), ("rows_dropped", pa.int64()),
    ("seconds", pa.float64()), ("metrics", pa.string()),
])
RUNS_SCHEMA = pa.schema([
    ("run_id", pa.string()), ("recipe", pa.string()), ("recipe_sha", pa.string()),
    ("started", pa.timestamp("us", tz="UTC")), ("finished", pa.timestamp("us", tz="UTC")),
    ("status", pa.string()), ("error", pa.string()), ("rows_in", pa.int64()),
    ("rows_out", pa.int64()), ("seed", pa.int64()), ("input", pa.string()),
    ("versions", pa.string()), ("resumed_from_step", pa.int16()),
])


def versions() -> str:
    from importlib.metadata import version

    names = ["curate", "ray", "pyarrow", "duckdb", "datasketch", "numpy"]
    return " ".join(f"{n}={version(n)}" for n in names) + f" python={platform.python_version()}"


def write_ops(run_dir: Path, run_id: str, ops: list[dict]) -> None:
    rows = [{"run_id": run_id, **r} for r in ops]
    atomic_write(pa.Table.from_pylist(rows, schema=OPS_SCHEMA), run_dir / "ops.parquet")


def write_run(run_dir: Path, *, run_id: str, recipe, recipe_yaml: str, started: datetime,
              finished: datetime, status: str, error: str | None, rows_in: int | None,
              rows_out: int | None, resumed_from: int = 0) -> None:
    row = {
        "run_id": run_id, "recipe": recipe.name,
        "recipe_sha": hashlib.sha256(recipe_yaml.encode()).hexdigest(),
        "started": started, "finished": finished, "status": status, "error": error,
        "rows_in": rows_in, "rows_out": rows_out, "seed": recipe.execution.seed,
        "input": recipe.input.path, "versions": versions(),
        "resumed_from_step": resumed_from,
    }
    atomic_write(pa.Table.from_pylist([row], schema=RUNS_SCHEMA), run_dir / "runs.parquet")
