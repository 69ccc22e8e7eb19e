"""`curate validate` through the real entry point reports decontam.embedding's bad input at
the step's line: a benchmark file that is missing or has no text column, a model directory
that does not exist. Nothing loads a model."""

from __future__ import annotations

from tests.cli.test_cli import curate
from tests.conftest import write_parquet


def _recipe(tmp_path, params: str) -> str:
    write_parquet(tmp_path / "in" / "a.parquet", [{"id": "a", "text": "hello world"}])
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"name: t\ninput: {{path: '{tmp_path}/in/*.parquet'}}\n"
                      f"output: {{path: '{tmp_path}/out'}}\nsteps:\n"
                      "  - op: decontam.embedding\n    name: emb\n"
                      f"    params: {{{params}}}\n")
    return str(recipe)


def test_validate_names_the_missing_benchmark_file_at_the_steps_line(tmp_path):
    recipe = _recipe(tmp_path, f"benchmarks: ['{tmp_path}/bench/*.jsonl']")
    res = curate("validate", recipe)
    assert res.returncode == 2, res.stderr
    assert f"{recipe}:5: step 'emb' (steps[0])" in res.stderr
    assert f"benchmarks: '{tmp_path}/bench/*.jsonl' matches no file" in res.stderr


def test_validate_names_the_benchmark_file_without_the_text_column(tmp_path):
    write_parquet(tmp_path / "bench" / "b.parquet", [{"id": "1", "question": "q"}])
    recipe = _recipe(tmp_path, f"benchmarks: ['{tmp_path}/bench/b.parquet']")
    res = curate("validate", recipe)
    assert res.returncode == 2, res.stderr
    assert f"{tmp_path}/bench/b.parquet: no column 'text'" in res.stderr


def test_validate_reports_a_model_directory_that_does_not_exist(tmp_path):
    write_parquet(tmp_path / "bench" / "b.parquet", [{"id": "1", "text": "a question"}])
    recipe = _recipe(tmp_path, f"benchmarks: ['{tmp_path}/bench/b.parquet'], "
                               f"model: '{tmp_path}/no-model'")
    res = curate("validate", recipe)
    assert res.returncode == 2, res.stderr
    assert "model" in res.stderr and f"'{tmp_path}/no-model' does not exist" in res.stderr
