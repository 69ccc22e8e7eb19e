"""`curate stats` through the real entry point: scoped views, --to, the sandbox."""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.cli.test_cli import curate
from tests.conftest import write_parquet
from tests.unit.test_stats_views import make_run


def rows_of(res) -> list[list[str]]:
    assert res.returncode == 0, res.stderr
    return list(csv.reader(io.StringIO(res.stdout)))


def one_error_line(res) -> str:
    """The single `error:` line a refused command prints (and nothing else on stderr)."""
    assert res.returncode == 2, (res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), res.stderr
    return lines[0]


@pytest.fixture
def out(tmp_path: Path) -> Path:
    out = tmp_path / "out"
    make_run(out, "20250101T000000Z-aaaaaa", minutes=0)
    make_run(out, "20250101T001000Z-bbbbbb", minutes=10)
    return out


@pytest.mark.ray
def test_rerunning_into_one_out_does_not_double_count(tmp_path):
    rows = [{"id": f"r{i}", "text": t} for i, t in enumerate(
        ["one two three four five"] * 3 + ["short", "a different text of five words", None])]
    write_parquet(tmp_path / "in" / "a.parquet", rows)
    out = tmp_path / "out"
    for _ in range(2):
        res = curate("run", "recipes/quickstart.yaml", "--input", str(tmp_path / "in/*.parquet"),
                     "--output", str(out), "--set", "steps.not-too-short.params.min_words=2",
                     "--set", "execution.num_cpus=1")
        assert res.returncode == 0, res.stderr[-3000:]

    reasons = curate("stats", str(out), "SELECT reason, count(*) AS n FROM dropped "
                     "GROUP BY 1 ORDER BY 1", "--format", "csv")
    assert rows_of(reasons) == [["reason", "n"], ["exact_duplicate", "2"], ["null_text", "1"],
                                ["too_short", "1"]]
    steps = [["n"], ["4"]]  # input + the quickstart's 3 steps
    assert rows_of(curate("stats", str(out), "SELECT count(*) AS n FROM ops", "-f", "csv")) == steps
    assert rows_of(curate("stats", str(out), "SELECT count(*) AS n FROM all_ops",
                          "-f", "csv")) == [["n"], ["8"]]
    assert rows_of(curate("stats", str(out), "SELECT count(*) AS n FROM all_runs "
                          "WHERE status = 'succeeded'", "-f", "csv")) == [["n"], ["2"]]


def test_to_file_writes_the_table_format_and_never_overwrites_unasked(out, tmp_path):
    target = tmp_path / "report.txt"
    sql = "SELECT op, count(*) AS n FROM all_ops GROUP BY 1 ORDER BY 1"
    res = curate("stats", str(out), sql, "--to", str(target))
    assert res.returncode == 0, res.stderr
    text = target.read_text(encoding="utf-8")
    assert "op0" in text and "op2" in text and " n " in text and "\x1b" not in text
    assert "Traceback" not in res.stderr

    target.write_text("mine")
    refused = curate("stats", str(out), "SELECT 1 AS one", "--to", str(target))
    assert "exists; give --overwrite" in one_error_line(refused)
    assert target.read_text() == "mine"
    again = curate("stats", str(out), "SELECT 1 AS one", "--to", str(target), "--overwrite")
    assert again.returncode == 0, again.stderr
    assert "one" in target.read_text() and "mine" not in target.read_text()

    parquet = tmp_path / "ops.parquet"
    res = curate("stats", str(out), "SELECT * FROM ops", "-f", "parquet", "--to", str(parquet))
    assert res.returncode == 0, res.stderr
    assert pq.read_table(parquet).num_rows == 3


def test_to_inside_the_run_folder_is_refused(out):
    ops = out / "_curate" / "runs" / "20250101T001000Z-bbbbbb" / "ops.parquet"
    before = ops.read_bytes()
    res = curate("stats", str(out), "SELECT 1", "-f", "parquet", "--to", str(ops), "--overwrite")
    assert "inside" in one_error_line(res) and ops.read_bytes() == before
    fresh = out / "_curate" / "report.csv"
    res = curate("stats", str(out), "SELECT 1", "-f", "csv", "--to", str(fresh))
    assert "inside" in one_error_line(res) and not fresh.exists()


@pytest.mark.parametrize("sql", [
    "EXPLAIN ANALYZE COPY (SELECT 1) TO '{target}'",
    "COPY (SELECT 1) TO '{target}'",
    "SELECT * FROM read_text('/etc/passwd')",
    "SELECT 1; ATTACH '{target}' AS x",
    "EXPLAIN ANALYZE INSTALL httpfs",
])
def test_hostile_query_exits_2_with_one_error_line(out, tmp_path, sql):
    target = tmp_path / "x.csv"
    res = curate("stats", str(out), sql.format(target=target))
    one_error_line(res)
    assert not target.exists() and "root:" not in res.stdout


def test_timeout_flag_stops_a_long_query(out):
    t0 = time.perf_counter()
    res = curate("stats", str(out), "SELECT count(*) FROM range(100000) a, range(100000) b, "
                 "range(1000) c", "--timeout", "1")
    assert "timeout" in one_error_line(res)
    assert time.perf_counter() - t0 < 30


def test_no_runs_is_still_a_clear_error(tmp_path):
    res = curate("stats", str(tmp_path / "nowhere"), "SELECT 1")
    assert "holds no curate runs" in one_error_line(res)
