"""decontam.ngram writes the same bytes in this process and on Ray: the index is fitted
once and shared with the workers through the object store."""

from __future__ import annotations

import pytest

from curate.recipe import parse_recipe
from pipelines.runner import run
from tests.conftest import run_outputs
from tests.unit.test_decontam_ngram_op import write_planted


def _run(bench, glob, out, engine, index):
    loaded = parse_recipe(
        f"name: decontam\ninput: {{path: '{glob}'}}\n"
        f"output: {{path: '{out}', rows_per_shard: 2}}\n"
        f"execution: {{engine: {engine}, concurrency: 1}}\nsteps:\n"
        "  - op: decontam.ngram\n"
        f"    params: {{benchmarks: ['{bench}'], text_columns: [question, answer], "
        f"index: {index}}}\n")
    return run(loaded.run_spec(), loaded.operators)


@pytest.mark.ray
@pytest.mark.parametrize("index", ["exact", "bloom"])
def test_decontam_ngram_is_identical_in_process_and_on_ray(ray_session, tmp_path, index):
    bench, glob = write_planted(tmp_path)
    on_ray = _run(bench, glob, tmp_path / "ray", "ray", index)
    local = _run(bench, glob, tmp_path / "local", "inprocess", index)
    got, want = run_outputs(tmp_path / "local"), run_outputs(tmp_path / "ray")
    assert any(k.startswith("part-") for k in want) and got.keys() == want.keys()
    for key in want:
        assert got[key] == want[key], key
    dropped = [v for k, v in want.items() if k.startswith("dropped/")]
    assert sorted(i for d in dropped for i in d["id"]) == ["p0", "p1"]
    assert on_ray.ops[-1]["rows_dropped"] == 2
    assert on_ray.ops[-1]["metrics"] == local.ops[-1]["metrics"]
