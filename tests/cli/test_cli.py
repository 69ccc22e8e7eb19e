"""The real `curate` entry point, run as a subprocess."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.conftest import REPO, write_parquet

CURATE = str(Path(sys.executable).parent / "curate")


def curate(*args: str, cwd: Path = REPO, env: dict | None = None
           ) -> subprocess.CompletedProcess:
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "COLUMNS": "200", **(env or {})}
    return subprocess.run([CURATE, *args], cwd=cwd, capture_output=True, text=True, env=env,
                          timeout=300)


BAD = """\
name: bad
input: {path: "x/*.parquet"}
output: {path: out}
steps:
  - op: dedup.exakt
  - op: filter.length
    params: {min_words: -1}
"""


def test_validate_reports_each_error_with_its_line(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(BAD)
    res = curate("validate", str(recipe))
    assert res.returncode == 2
    assert f"{recipe}:5: step 'dedup.exakt'" in res.stderr
    assert "did you mean 'dedup.exact'" in res.stderr
    assert f"{recipe}:7: step 'filter.length'" in res.stderr and "min_words" in res.stderr


def test_validate_accepts_the_quickstart():
    res = curate("validate", "recipes/quickstart.yaml")
    assert res.returncode == 0, res.stderr
    assert "ok" in res.stdout and "3 steps" in res.stdout


def test_ops_catalogue_and_details():
    listing = curate("ops")
    assert listing.returncode == 0
    for name in ("text.normalize", "filter.length", "dedup.exact"):
        assert name in listing.stdout
    detail = curate("ops", "filter.length")
    assert "min_words" in detail.stdout and ">= 0" in detail.stdout and "too_short" in detail.stdout
    unknown = curate("ops", "filter.lenth")
    assert unknown.returncode == 2 and "did you mean 'filter.length'" in unknown.stderr


def test_sample_writes_parquet_and_jsonl(tmp_path):
    assert curate("sample", str(tmp_path / "s.parquet"), "-n", "25").returncode == 0
    assert pq.read_table(tmp_path / "s.parquet").num_rows == 25
    assert curate("sample", str(tmp_path / "s.jsonl"), "-n", "7").returncode == 0
    lines = (tmp_path / "s.jsonl").read_text().splitlines()
    assert len(lines) == 7 and "text" in json.loads(lines[0])


def test_run_reports_an_unreadable_shard_by_name(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "broken.parquet").write_bytes(b"nope")
    res = curate("run", "recipes/quickstart.yaml", "--input", str(tmp_path / "in/*.parquet"),
                 "--output", str(tmp_path / "out"))
    assert res.returncode == 1
    assert "broken.parquet: not a readable Parquet file" in res.stderr
    assert "Traceback" not in res.stderr


@pytest.mark.ray
def test_run_then_stats_through_the_entry_point(tmp_path):
    rows = [{"id": f"r{i}", "text": t} for i, t in enumerate(
        ["one two three four five"] * 3 + ["short", "a different text of five words", None])]
    write_parquet(tmp_path / "in" / "a.parquet", rows)
    out = tmp_path / "out"
    res = curate("run", "recipes/quickstart.yaml", "--input", str(tmp_path / "in/*.parquet"),
                 "--output", str(out), "--set", "steps.not-too-short.params.min_words=2",
                 "--set", "execution.num_cpus=1")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "funnel" in res.stdout and "done" in res.stdout

    sql = "SELECT op, rows_in, rows_out, rows_dropped FROM ops ORDER BY step"
    stats = curate("stats", str(out), sql, "--format", "csv")
    assert stats.returncode == 0, stats.stderr
    table = list(csv.reader(io.StringIO(stats.stdout)))
    assert table == [
        ["op", "rows_in", "rows_out", "rows_dropped"],
        ["input.read", "6", "5", "1"],
        ["text.normalize", "5", "5", "0"],
        ["filter.length", "5", "4", "1"],
        ["dedup.exact", "4", "2", "2"],
    ]
    as_json = json.loads(curate("stats", str(out), "SELECT id, reason, detail FROM dropped "
                                "ORDER BY id", "--format", "json").stdout)
    assert as_json == [
        {"id": "r1", "reason": "exact_duplicate", "detail": "r0"},
        {"id": "r2", "reason": "exact_duplicate", "detail": "r0"},
        {"id": "r3", "reason": "too_short", "detail": "words=1 < min_words=2"},
        {"id": "r5", "reason": "null_text", "detail": "a.parquet row 5: text is null"},
    ]
    table_out = curate("stats", str(out), "SELECT count(*) AS n FROM signals")
    assert table_out.returncode == 0 and "n" in table_out.stdout

    refused = curate("stats", str(out), "DELETE FROM ops")
    assert refused.returncode == 2 and "read-only" in refused.stderr
    copy = curate("stats", str(out), f"COPY (SELECT 1) TO '{tmp_path}/x.csv'")
    assert copy.returncode == 2 and not (tmp_path / "x.csv").exists()
    missing = curate("stats", str(tmp_path / "nowhere"), "SELECT 1")
    assert missing.returncode == 2 and "holds no curate runs" in missing.stderr


@pytest.mark.skipif(not (REPO.parent / "shared" / "data" / "samples").exists(),
                    reason="shared sample corpus not present")
def test_train_quality_reports_held_out_metrics(tmp_path):
    import pyarrow.compute as pc

    table = pq.read_table(REPO.parent / "shared" / "data" / "samples" / "quality.parquet")
    pq.write_table(table.filter(pc.equal(table["label"], "ham")), tmp_path / "ham.parquet")
    pq.write_table(table.filter(pc.equal(table["label"], "spam")), tmp_path / "spam.parquet")
    res = curate("train-quality", "--positive", str(tmp_path / "ham.parquet"),
                 "--negative", str(tmp_path / "spam.parquet"), "--out", str(tmp_path / "m"))
    assert res.returncode == 0, res.stderr
    auc = float(res.stdout.split("AUC")[1].split()[0])
    assert auc > 0.9
    missing = curate("train-quality", "--positive", str(tmp_path / "none*.parquet"),
                     "--negative", str(tmp_path / "spam.parquet"), "--out", str(tmp_path / "x"))
    assert missing.returncode != 0
