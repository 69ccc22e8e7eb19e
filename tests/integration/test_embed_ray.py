"""embed through Ray actors: a recipe run whose output vectors match a direct encode."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate.recipe import parse_recipe
from curate.stats import query
from operators.embed import vectors_of
from operators.embed.cache import EmbeddingCache
from operators.embed.models import default_model_path, model_fingerprint
from pipelines.runner import run
from tests.conftest import SAMPLES, write_parquet

pytestmark = pytest.mark.ray

os.environ["HF_HUB_OFFLINE"] = "1"


def run_recipe(input_glob: str, out: Path, steps: str):
    text = (f"name: t\ninput: {{path: '{input_glob}'}}\n"
            f"output: {{path: '{out}', rows_per_shard: 7}}\nsteps:\n{steps}")
    loaded = parse_recipe(text)
    return run(loaded.recipe.run_spec(text), loaded.operators)


@pytest.fixture(scope="module")
def docs(tmp_path_factory) -> tuple[Path, list[dict]]:
    """20 sample documents (and 2 that an earlier step drops) in two shards."""
    corpus = pq.read_table(SAMPLES / "corpus" / "part-00001.parquet", columns=["id", "text"])
    rows = corpus.slice(0, 20).to_pylist()
    root = tmp_path_factory.mktemp("embed")
    write_parquet(root / "a.parquet", rows[:12] + [{"id": "tiny", "text": "x"}])
    write_parquet(root / "b.parquet", rows[12:] + [{"id": "tiny2", "text": "y"}])
    return root, rows


def test_embed_in_actors_matches_direct_encode(ray_session, docs, tmp_path):
    from sentence_transformers import SentenceTransformer

    root, rows = docs
    cache = tmp_path / "cache"
    steps = ("  - op: filter.length\n    params: {min_chars: 2}\n"
             "  - op: embed\n"
             f"    params: {{batch_size: 8, cache_dir: '{cache}'}}\n")  # default threads
    result = run_recipe(str(root / "*.parquet"), tmp_path / "out", steps)
    assert [r["rows_out"] for r in result.ops] == [22, 20, 20]

    parts = sorted((tmp_path / "out").glob("part-*.parquet"))
    table = pa.concat_tables(pq.read_table(p) for p in parts)
    assert table.column_names == ["id", "text", "embedding"]
    assert table["embedding"].type == pa.list_(pa.float32(), 384)
    assert table["id"].to_pylist() == [r["id"] for r in rows]  # input order kept

    model = SentenceTransformer(str(default_model_path()), device="cpu", local_files_only=True)
    direct = model.encode([r["text"] for r in rows], normalize_embeddings=True)
    got = vectors_of(table["embedding"])
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert (got * direct).sum(axis=1).min() > 0.999

    # The actors wrote the cache, keyed by text, model fingerprint, backend and truncation:
    # a later run reads these vectors back bit for bit instead of encoding.
    cached = EmbeddingCache(cache, model_id=model_fingerprint(str(default_model_path())),
                            backend="torch", max_tokens=256, dim=384)
    found, vectors = cached.lookup(cached.keys([r["text"] for r in rows]))
    assert found.all()
    np.testing.assert_array_equal(vectors, got)

    ops = query(tmp_path / "out", "SELECT name, rows_in, rows_dropped FROM ops "
                                  "ORDER BY step").to_pylist()
    assert ops[2] == {"name": "embed", "rows_in": 20, "rows_dropped": 0}
