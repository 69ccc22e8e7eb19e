"""The D4 chain through the real CLI: select.prototypes' column contract at `curate
validate`, recipes/d4.yaml validates, and `curate ops` documents the operator."""

from __future__ import annotations

from tests.cli.test_cli import curate
from tests.conftest import write_parquet


def test_validate_prototypes_without_embed_fails_at_its_line(tmp_path):
    write_parquet(tmp_path / "in" / "a.parquet", [{"id": "a", "text": "hello"}])
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"name: t\ninput: {{path: '{tmp_path}/in/*.parquet'}}\n"
                      f"output: {{path: '{tmp_path}/out'}}\nsteps:\n"
                      "  - op: dedup.minhash\n"
                      "  - op: select.prototypes\n    name: prototypes\n"
                      "    params: {keep_fraction: 0.8}\n")
    res = curate("validate", str(recipe))
    assert res.returncode == 2, res.stderr
    assert (f"{recipe}:6: step 'prototypes' (steps[1]): needs column 'embedding' "
            "(vector<float32>) which no earlier step writes and the input does not have; "
            "add an `embed` step before it") in res.stderr


def test_validate_rejects_a_keep_fraction_out_of_range(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"name: t\ninput: {{path: '{tmp_path}/in/*.parquet'}}\n"
                      f"output: {{path: '{tmp_path}/out'}}\nsteps:\n"
                      "  - op: embed\n"
                      "  - op: select.prototypes\n"
                      "    params: {keep_fraction: 1.5}\n")
    res = curate("validate", str(recipe))
    assert res.returncode == 2
    assert f"{recipe}:7:" in res.stderr and "keep_fraction" in res.stderr


def test_the_d4_recipe_validates():
    res = curate("validate", "recipes/d4.yaml")
    assert res.returncode == 0, res.stderr
    assert "ok" in res.stdout and "5 steps" in res.stdout


def test_ops_documents_prototypes():
    res = curate("ops", "select.prototypes")
    assert res.returncode == 0, res.stderr
    for word in ("keep_fraction", "prototypical", "cluster_rank", "centroid_cosine",
                 "embedding"):
        assert word in res.stdout, word
