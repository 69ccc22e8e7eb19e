"""`curate stats` views: the default ones show the latest succeeded run of each recipe."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate.stats import Limits, StatsError, query
from pipelines.tables import DROPPED_SCHEMA, OPS_SCHEMA, RUNS_SCHEMA, SIGNALS_SCHEMA

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def make_run(out: Path, run_id: str, *, recipe: str = "quickstart",
             status: str | None = "succeeded", minutes: int = 0, steps: int = 3,
             dropped: int = 4, signals: int = 2) -> Path:
    """Write a run directory as `pipelines` does (status None: killed, no runs.parquet)."""
    d = out / "_curate" / "runs" / run_id
    d.mkdir(parents=True)
    if status is not None:
        finished = T0 + timedelta(minutes=minutes)
        pq.write_table(pa.Table.from_pylist([{
            "run_id": run_id, "recipe": recipe, "status": status, "started": finished,
            "finished": finished, "rows_in": 10, "rows_out": 10 - dropped,
        }], schema=RUNS_SCHEMA), d / "runs.parquet")
    if status == "succeeded":  # failed and killed runs write no ops.parquet
        pq.write_table(pa.Table.from_pylist([
            {"run_id": run_id, "step": i, "op": f"op{i}", "name": f"s{i}", "rows_in": 10,
             "rows_out": 10, "rows_dropped": 0, "seconds": 0.1} for i in range(steps)
        ], schema=OPS_SCHEMA), d / "ops.parquet")
    if dropped:
        (d / "dropped").mkdir()
        pq.write_table(pa.Table.from_pylist([
            {"run_id": run_id, "step": 1, "op": "filter.length", "name": "f", "id": f"r{i}",
             "reason": "too_short", "detail": "words=1"} for i in range(dropped)
        ], schema=DROPPED_SCHEMA), d / "dropped" / "part-00000.parquet")
    if signals:
        (d / "signals").mkdir()
        pq.write_table(pa.Table.from_pylist([
            {"run_id": run_id, "step": 1, "op": "filter.length", "name": "f", "id": f"r{i}",
             "key": "words", "num": float(i)} for i in range(signals)
        ], schema=SIGNALS_SCHEMA), d / "signals" / "part-00000.parquet")
    return d


def scalar(out: Path, sql: str):
    return query(out, sql).columns[0][0].as_py()


@pytest.fixture
def mixed(tmp_path: Path) -> Path:
    """Two succeeded quickstart runs, a later failed one and a killed one; one other recipe."""
    out = tmp_path / "out"
    make_run(out, "20250101T000000Z-aaaaaa", minutes=0, dropped=4, signals=2)
    make_run(out, "20250101T001000Z-bbbbbb", minutes=10, dropped=4, signals=2)
    make_run(out, "20250101T002000Z-cccccc", status="failed", minutes=20, dropped=7, signals=3)
    make_run(out, "20250101T003000Z-dddddd", status=None, dropped=9, signals=5)
    make_run(out, "20241231T000000Z-eeeeee", recipe="gopher", minutes=-60, steps=2, dropped=1,
             signals=0)
    return out


def test_default_views_show_the_latest_succeeded_run_of_each_recipe(mixed):
    latest = {"20250101T001000Z-bbbbbb", "20241231T000000Z-eeeeee"}
    runs = query(mixed, "SELECT run_id, recipe, status FROM runs ORDER BY recipe").to_pylist()
    assert {r["run_id"] for r in runs} == latest
    assert [r["recipe"] for r in runs] == ["gopher", "quickstart"]
    assert scalar(mixed, "SELECT count(*) FROM ops") == 3 + 2
    assert scalar(mixed, "SELECT count(*) FROM dropped WHERE reason = 'too_short'") == 4 + 1
    assert scalar(mixed, "SELECT count(*) FROM signals") == 2
    for view in ("ops", "dropped", "signals"):
        ids = set(query(mixed, f"SELECT DISTINCT run_id FROM {view}").columns[0].to_pylist())
        assert ids <= latest, view


def test_all_views_show_every_run_including_failed_and_unfinished(mixed):
    assert scalar(mixed, "SELECT count(*) FROM all_runs") == 4  # the killed run has no row
    assert scalar(mixed, "SELECT count(*) FROM all_runs WHERE status = 'failed'") == 1
    assert scalar(mixed, "SELECT count(*) FROM all_ops") == 3 + 3 + 2
    assert scalar(mixed, "SELECT count(*) FROM all_dropped") == 4 + 4 + 7 + 9 + 1
    assert scalar(mixed, "SELECT count(*) FROM all_signals") == 2 + 2 + 3 + 5
    assert scalar(mixed, "SELECT count(DISTINCT run_id) FROM all_dropped") == 5


def test_views_bind_with_their_columns_when_no_run_succeeded(tmp_path):
    out = tmp_path / "out"
    make_run(out, "20250101T000000Z-ffffff", status="failed", dropped=3)
    assert scalar(out, "SELECT count(*) FROM runs") == 0
    assert scalar(out, "SELECT count(*) FROM dropped") == 0
    assert query(out, "SELECT * FROM ops").column_names == OPS_SCHEMA.names
    assert query(out, "SELECT * FROM all_ops").num_rows == 0
    assert scalar(out, "SELECT count(*) FROM all_dropped") == 3
    assert query(out, "SELECT * FROM signals").column_names == SIGNALS_SCHEMA.names


def test_legitimate_queries_still_work_in_the_sandbox(mixed):
    assert query(mixed, "EXPLAIN SELECT count(*) FROM ops").num_rows == 1
    plan = query(mixed, "/* why */ EXPLAIN ANALYZE SELECT count(*) FROM all_dropped")
    assert "analyzed_plan" in plan.columns[0].to_pylist()
    assert "reason" in query(mixed, "DESCRIBE dropped").columns[0].to_pylist()
    ops = (mixed / "_curate/runs/20250101T001000Z-bbbbbb/ops.parquet").as_posix()
    assert scalar(mixed, f"SELECT count(*) FROM read_parquet('{ops}')") == 3
    assert scalar(mixed, "WITH d AS (FROM all_dropped) SELECT count(*) FROM d") == 25


def test_no_runs_and_bad_limits_are_clear_errors(tmp_path, mixed):
    with pytest.raises(StatsError, match="holds no curate runs"):
        query(tmp_path / "nowhere", "SELECT 1")
    with pytest.raises(StatsError, match="not a size"):
        query(mixed, "SELECT 1", Limits(memory="lots"))
    with pytest.raises(StatsError, match="--threads"):
        query(mixed, "SELECT 1", Limits(threads=0))
