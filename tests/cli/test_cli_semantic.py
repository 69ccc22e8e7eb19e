"""`curate validate` checks dedup.semantic's column contract: it needs a vector column."""

from __future__ import annotations

from tests.cli.test_cli import curate
from tests.conftest import write_parquet


def test_validate_semantic_without_embed_fails_at_its_line(tmp_path):
    write_parquet(tmp_path / "in" / "a.parquet", [{"id": "a", "text": "hello"}])
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"name: t\ninput: {{path: '{tmp_path}/in/*.parquet'}}\n"
                      f"output: {{path: '{tmp_path}/out'}}\nsteps:\n"
                      "  - op: filter.length\n"
                      "  - op: dedup.semantic\n    name: semantic\n")
    res = curate("validate", str(recipe))
    assert res.returncode == 2, res.stderr
    assert (f"{recipe}:6: step 'semantic' (steps[1]): needs column 'embedding' "
            "(vector<float32>) which no earlier step writes and the input does not have; "
            "add an `embed` step before it") in res.stderr
