"""The `removed` view through the real `curate` entry point, on the quickstart."""

from __future__ import annotations

import json

import pyarrow.parquet as pq

from tests.cli.test_cli import curate


def stats(out, sql: str) -> list[dict]:
    res = curate("stats", str(out), sql, "--format", "json")
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def test_removed_holds_the_dropped_texts(tmp_path):
    out = tmp_path / "all"
    res = curate("run", "recipes/quickstart.yaml", "--set", f"output.path={out}",
                 "--set", "output.keep_removed=all")
    assert res.returncode == 0, res.stderr
    removed = stats(out, "SELECT id, step, op, name, reason, text FROM removed ORDER BY id")
    dropped = stats(out, "SELECT id, step, op, name, reason FROM dropped ORDER BY id")
    assert dropped, "the quickstart drops rows"
    assert [{k: r[k] for k in dropped[0]} for r in removed] == dropped
    # filter.length (min_words: 20) dropped them: each kept text is a real short section.
    assert all(r["text"] and len(r["text"].split()) < 20 for r in removed)


def test_default_sample_is_bounded_per_shard_step_and_reason(tmp_path):
    out = tmp_path / "sample"
    assert curate("run", "recipes/quickstart.yaml", "--set", f"output.path={out}").returncode == 0
    files = sorted(out.glob("_curate/runs/*/removed/part-*.parquet"))
    assert len(files) == 4  # one per input shard
    dropped = {r["id"] for r in stats(out, "SELECT id FROM dropped")}
    per_shard = []
    for f in files:
        table = pq.read_table(f)
        assert set(table["id"].to_pylist()) <= dropped
        assert table["text"].null_count == 0
        groups = table.group_by(["step", "reason"]).aggregate([("id", "count")])
        per_shard.append(groups["id_count"].to_pylist())
    # Each shard drops more than 20 short sections, so each keeps exactly 20 of them.
    assert per_shard == [[20]] * 4
    shown = stats(out, "SELECT count(*) AS n FROM removed")
    assert shown == [{"n": 80}]
