"""The engine's run spec: built from a validated recipe; `pipelines` runs without `curate`."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from curate.recipe import parse_recipe
from pipelines import layout
from pipelines.spec import ExecutionSpec, InputSpec, OutputSpec, RunSpec
from pipelines.tables import STATS_TABLES

REPO = Path(__file__).resolve().parents[2]

RECIPE = """\
name: spec-test
input: {path: 'in/*.jsonl', format: jsonl, id_column: doc_id, batch_rows: 100}
output: {path: out, compression: snappy}
execution: {seed: 7, concurrency: 3}
steps:
  - op: text.normalize
  - op: dedup.exact
    name: exact
"""


def test_recipe_converts_to_run_spec_with_defaults_filled():
    loaded = parse_recipe(RECIPE)
    spec = loaded.recipe.run_spec("resolved: text")
    assert spec == RunSpec(
        name="spec-test",
        input=InputSpec(path="in/*.jsonl", format="jsonl", text_column="text",
                        id_column="doc_id", max_doc_bytes=8_000_000, batch_rows=100),
        output=OutputSpec(path="out", rows_per_shard=100_000, compression="snappy",
                          keep_removed="sample", removed_per_reason=20),
        execution=ExecutionSpec(address="local", seed=7, concurrency=3, num_cpus=None,
                                object_store_mb=1024, engine="auto",
                                inprocess_max_rows=100_000, tokenizer="cl100k_base"),
        steps=("text.normalize", "exact"),
        recipe_yaml="resolved: text",
    )
    assert len(spec.steps) == len(loaded.operators)


def test_set_overrides_reach_the_run_spec():
    loaded = parse_recipe(RECIPE, sets=[
        "output.path=elsewhere", "execution.seed=42", "input.max_doc_bytes=500",
        "output.rows_per_shard=10", "execution.address=ray://head:10001",
    ])
    spec = loaded.recipe.run_spec("x")
    assert spec.output.path == "elsewhere"
    assert spec.output.rows_per_shard == 10
    assert spec.execution.seed == 42
    assert spec.execution.address == "ray://head:10001"
    assert spec.input.max_doc_bytes == 500


def test_loaded_recipe_records_the_resolved_text():
    loaded = parse_recipe(RECIPE, sets=["execution.seed=42"])
    spec = loaded.run_spec()
    assert spec.recipe_yaml == yaml.safe_dump(loaded.raw, sort_keys=False)
    assert yaml.safe_load(spec.recipe_yaml)["execution"]["seed"] == 42
    assert spec == loaded.recipe.run_spec(spec.recipe_yaml)


def test_run_spec_is_frozen_plain_values():
    spec = parse_recipe(RECIPE).recipe.run_spec("x")
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.name = "other"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.execution.seed = 1  # type: ignore[misc]
    assert isinstance(spec.steps, tuple)
    for part in (spec.input, spec.output, spec.execution):
        assert type(part).__module__ == "pipelines.spec"


def test_pipelines_import_without_curate():
    code = ("import sys, pipelines.runner, pipelines.run_record, pipelines.spec, "
            "pipelines.tables, pipelines.layout\n"
            "bad = sorted(m for m in sys.modules if m == 'curate' or m.startswith('curate.'))\n"
            "assert not bad, bad\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_every_stats_table_has_files_in_the_layout():
    assert set(STATS_TABLES) == set(layout.RUN_TABLES)
    run = Path("/o/_curate/runs/r")
    assert layout.runs_file(run).name == layout.RUN_TABLES["runs"]
    assert layout.ops_file(run).name == layout.RUN_TABLES["ops"]
    assert layout.dropped_file(run, 3).match(layout.RUN_TABLES["dropped"])
    assert layout.signals_file(run, 3).match(layout.RUN_TABLES["signals"])
    assert layout.removed_file(run, 3).match(layout.RUN_TABLES["removed"])
