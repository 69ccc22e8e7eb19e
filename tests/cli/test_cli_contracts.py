"""`curate validate` checks column contracts over the whole chain, through the real entry point.

No shipped operator reads a column other than the text and id columns yet (semantic dedup
will read `embedding`), and those two are always there as a string / any type. So the
`curate` process gets one extra, test-only operator the ordinary way: a module found by
the registry in a folder appended to `operators.__path__` by a `sitecustomize` on
PYTHONPATH. Everything else (entry point, registry walk, recipe validation, `embed`'s
declared output) is the real code.
"""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pytest

from tests.cli.test_cli import curate
from tests.conftest import write_parquet

TOY = '''\
from operators.base import ColumnType, MapOperator, vector


class NeedsVector(MapOperator):
    name = "test.needs_vector"
    doc = "reads embedding vectors (test only)"

    def reads(self) -> dict[str, ColumnType]:
        return {**super().reads(), "embedding": vector()}
'''


@pytest.fixture
def env(tmp_path) -> dict[str, str]:
    """Environment for a `curate` that also knows `test.needs_vector`."""
    site, plugin = tmp_path / "site", tmp_path / "plugin"
    site.mkdir()
    plugin.mkdir()
    (plugin / "contracts_toy.py").write_text(TOY)
    (site / "sitecustomize.py").write_text(
        f"import operators\noperators.__path__.append({str(plugin)!r})\n")
    path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH")) if p)
    return {"PYTHONPATH": path}


def write_recipe(tmp_path: Path, steps: str, rows: list[dict], schema: pa.Schema | None = None
                 ) -> Path:
    write_parquet(tmp_path / "in" / "a.parquet", rows, schema)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"name: t\ninput: {{path: '{tmp_path / 'in' / '*.parquet'}'}}\n"
                      f"output: {{path: '{tmp_path / 'out'}'}}\nsteps:\n{steps}")
    return recipe


def test_validate_names_the_line_of_a_step_whose_column_no_step_writes(tmp_path, env):
    recipe = write_recipe(tmp_path, "  - op: filter.length\n  - op: test.needs_vector\n"
                                    "    name: semantic\n", [{"id": "a", "text": "hi"}])
    res = curate("validate", str(recipe), env=env)
    assert res.returncode == 2, res.stdout + res.stderr
    assert (f"{recipe}:6: step 'semantic' (steps[1]): needs column 'embedding' "
            "(vector<float32>) which no earlier step writes and the input does not have; "
            "add an `embed` step before it") in res.stderr


def test_validate_names_the_line_of_a_wrong_column_type(tmp_path, env):
    recipe = write_recipe(tmp_path, "  - op: test.needs_vector\n",
                          [{"id": "a", "text": "hi", "embedding": "not a vector"}])
    res = curate("validate", str(recipe), env=env)
    assert res.returncode == 2, res.stdout + res.stderr
    assert (f"{recipe}:5: step 'test.needs_vector' (steps[0]): column 'embedding' is "
            "string (from the input), needs vector<float32>") in res.stderr


def test_validate_accepts_embed_before_the_reader(tmp_path, env):
    recipe = write_recipe(tmp_path, "  - op: embed\n  - op: test.needs_vector\n",
                          [{"id": "a", "text": "hi"}])
    res = curate("validate", str(recipe), env=env)
    assert res.returncode == 0, res.stderr
    assert "ok" in res.stdout and "2 steps" in res.stdout


def test_ops_shows_the_columns_an_op_reads_and_writes():
    res = curate("ops", "embed")
    assert res.returncode == 0, res.stderr
    assert "reads columns: text (string)" in res.stdout
    assert "writes columns: embedding (vector<float32>[384])" in res.stdout
    assert "reads columns: text (string), id (any)" in curate("ops", "dedup.exact").stdout
