"""DuckDB views over a run directory's stats tables, queried read-only."""

from __future__ import annotations

import glob
from pathlib import Path

import duckdb
import pyarrow as pa

# View name -> file pattern under OUT/_curate/runs/RUN_ID/. Views span every run in OUT.
TABLES = {
    "runs": "runs.parquet",
    "ops": "ops.parquet",
    "signals": "signals/*.parquet",
    "dropped": "dropped/*.parquet",
}
READ_ONLY = {duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN}


class StatsError(ValueError):
    """A stats query that cannot be answered (no runs, or a statement that writes)."""


def _empty_schema(name: str) -> pa.Schema:
    from pipelines.run_record import OPS_SCHEMA, RUNS_SCHEMA
    from pipelines.writer import DROPPED_SCHEMA, SIGNALS_SCHEMA

    return {"runs": RUNS_SCHEMA, "ops": OPS_SCHEMA, "signals": SIGNALS_SCHEMA,
            "dropped": DROPPED_SCHEMA}[name]


def connect(out: str | Path) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with one view per stats table of the runs under `out`."""
    runs = Path(out) / "_curate" / "runs"
    if not runs.is_dir():
        raise StatsError(f"{out} holds no curate runs (no {runs}); run a recipe into it first")
    con = duckdb.connect(":memory:")
    for view, pattern in TABLES.items():
        path = (runs / "*" / pattern).as_posix()
        if glob.glob(path):
            escaped = path.replace("'", "''")
            con.execute(f"CREATE VIEW {view} AS SELECT * FROM "
                        f"read_parquet('{escaped}', union_by_name=true)")
        else:
            con.register(f"_{view}_empty", _empty_schema(view).empty_table())
            con.execute(f"CREATE VIEW {view} AS SELECT * FROM _{view}_empty")
    return con


def query(out: str | Path, sql: str) -> pa.Table:
    """Run one read-only statement against the views of `out`; return an Arrow table."""
    con = connect(out)
    try:
        statements = con.extract_statements(sql)
    except duckdb.Error as exc:
        raise StatsError(f"cannot parse query: {exc}") from None
    if len(statements) != 1:
        raise StatsError(f"give exactly one SQL statement (got {len(statements)})")
    if statements[0].type not in READ_ONLY:
        raise StatsError(
            f"stats are read-only: {statements[0].type.name} statements are refused; "
            "use SELECT (export with --format csv|json|parquet)"
        )
    try:
        return con.sql(sql).to_arrow_table()
    except duckdb.Error as exc:
        views = ", ".join(TABLES)
        raise StatsError(f"{exc}\n(views: {views})") from None
