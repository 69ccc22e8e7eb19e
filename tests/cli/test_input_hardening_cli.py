"""Input hardening through the real `curate run` entry point (issue 10, items 5 and 6)."""

from __future__ import annotations

import gzip
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.cli.test_cli import curate
from tests.conftest import write_jsonl, write_parquet

pytestmark = pytest.mark.ray

STEPS = "  - op: text.normalize\n  - op: dedup.exact\n"


def recipe(tmp_path: Path, input_glob: str, out: Path, fmt: str = "auto") -> Path:
    path = tmp_path / f"{out.name}.yaml"
    path.write_text(f"name: t\ninput: {{path: '{input_glob}', format: {fmt}}}\n"
                    f"output: {{path: '{out}', rows_per_shard: 2}}\n"
                    f"execution: {{address: local, num_cpus: 1}}\nsteps:\n{STEPS}")
    return path


def run(tmp_path: Path, input_glob: str, out: Path, fmt: str = "auto"):
    res = curate("run", str(recipe(tmp_path, input_glob, out, fmt)))
    assert res.returncode == 0, res.stderr[-3000:]
    assert "Traceback" not in res.stderr
    return res


def output(out: Path) -> list[dict]:
    parts = sorted(out.glob("part-*.parquet"))
    return pa.concat_tables([pq.read_table(p) for p in parts]).to_pylist() if parts else []


def dropped(out: Path) -> dict[str, dict]:
    (run_dir,) = (out / "_curate" / "runs").iterdir()
    parts = sorted((run_dir / "dropped").glob("*.parquet"))
    table = pa.concat_tables(pq.read_table(p) for p in parts)
    return {r["id"]: r for r in table.to_pylist()}


LINES = [
    {"id": "a", "text": "the first line of text"},
    b'{"id": "s", "text": "a lone \\ud800 surrogate"}',
    "",
    {"id": "e", "text": "an emoji \U0001F600 is fine"},
    {"id": "d", "text": "the first line of text"},
]


def test_surrogate_line_is_dropped_and_gzip_reads_like_plain(tmp_path):
    plain = write_jsonl(tmp_path / "plain" / "a.jsonl", LINES)
    (tmp_path / "gz").mkdir()
    (tmp_path / "gz" / "a.jsonl.gz").write_bytes(gzip.compress(plain.read_bytes()))

    res = run(tmp_path, str(tmp_path / "plain" / "*.jsonl"), tmp_path / "out_plain")
    assert "skipped 1 blank line(s) in 1 JSONL file(s)" in res.stderr
    run(tmp_path, str(tmp_path / "gz" / "*.gz"), tmp_path / "out_gz", fmt="jsonl")

    for out, name in ((tmp_path / "out_plain", "a.jsonl"), (tmp_path / "out_gz", "a.jsonl.gz")):
        gone = dropped(out)
        assert gone["s"]["reason"] == "unencodable_text"
        assert gone["s"]["step"] == 0
        assert gone["s"]["detail"].startswith(f"{name} row 1: line 2: field 'text'")
        assert gone["d"]["reason"] == "exact_duplicate" and gone["d"]["detail"] == "a"
        assert len(gone) == 2  # the blank line is not a row
    rows = output(tmp_path / "out_plain")
    assert [r["id"] for r in rows] == ["a", "e"]
    assert output(tmp_path / "out_gz") == rows


def test_duplicate_ids_across_shards_are_quarantined(tmp_path):
    write_parquet(tmp_path / "in" / "a.parquet", [{"id": "x", "text": "alpha beta gamma"},
                                                  {"id": "y", "text": "delta"}])
    write_parquet(tmp_path / "in" / "b.parquet", [{"id": "x", "text": "alpha beta gamma"},
                                                  {"id": "w", "text": "alpha beta gamma"}])
    out = tmp_path / "out"
    run(tmp_path, str(tmp_path / "in" / "*.parquet"), out)

    (run_dir,) = (out / "_curate" / "runs").iterdir()
    table = pa.concat_tables(pq.read_table(p) for p in sorted((run_dir / "dropped").glob("*")))
    rows = sorted(table.select(["step", "id", "reason", "detail"]).to_pylist(),
                  key=lambda r: r["step"])
    assert rows == [
        {"step": 0, "id": "x", "reason": "duplicate_id",
         "detail": "b.parquet row 0: id 'x' already at a.parquet row 0"},
        {"step": 2, "id": "w", "reason": "exact_duplicate", "detail": "x"},
    ]
    # a dedup detail never names the dropped row's own id
    assert all(r["detail"] != r["id"] for r in rows)
    assert [r["id"] for r in output(out)] == ["x", "y"]
