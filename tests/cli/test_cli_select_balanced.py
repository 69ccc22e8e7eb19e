"""The real `curate` CLI: `validate` checks select.balanced's column contract and params,
and `ops` documents it."""

from __future__ import annotations

from tests.cli.test_cli import curate
from tests.conftest import write_parquet


def _recipe(tmp_path, params: str) -> str:
    write_parquet(tmp_path / "in" / "a.parquet", [{"id": "a", "text": "hello"}])
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"name: t\ninput: {{path: '{tmp_path}/in/*.parquet'}}\n"
                      f"output: {{path: '{tmp_path}/out'}}\nsteps:\n"
                      "  - op: filter.length\n"
                      f"  - op: select.balanced\n    name: balance\n    params: {params}\n")
    return str(recipe)


def test_validate_without_an_embedding_column_fails_at_the_step_line(tmp_path):
    recipe = _recipe(tmp_path, "{target_size: 10}")
    res = curate("validate", recipe)
    assert res.returncode == 2, res.stderr
    assert (f"{recipe}:6: step 'balance' (steps[1]): needs column 'embedding' "
            "(vector<float32>) which no earlier step writes and the input does not have; "
            "add an `embed` step before it") in res.stderr


def test_validate_reports_two_targets(tmp_path):
    res = curate("validate", _recipe(tmp_path, "{target_size: 10, target_fraction: 0.5}"))
    assert res.returncode == 2, res.stderr
    assert "give exactly one of target_size and target_fraction" in res.stderr


def test_ops_documents_the_operator():
    res = curate("ops", "select.balanced")
    assert res.returncode == 0, res.stderr
    for word in ("target_fraction", "resampling_steps", "cluster_l1", "balanced_out",
                 "no_embedding"):
        assert word in res.stdout
