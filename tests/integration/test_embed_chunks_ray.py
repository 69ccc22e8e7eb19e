"""embed `long_text: chunks` through Ray actors: the vectors the in-process operator gives."""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from operators.base import Context
from operators.embed import Embed, EmbedParams, vectors_of
from operators.embed.cache import EmbeddingCache
from operators.embed.chunks import chunk_key
from operators.embed.models import default_model_path, model_fingerprint
from tests.integration.test_embed_ray import docs, run_recipe  # noqa: F401 (a fixture)

pytestmark = pytest.mark.ray

os.environ["HF_HUB_OFFLINE"] = "1"


def test_chunks_in_actors_match_the_operator_and_cache_apart(ray_session, docs, tmp_path):  # noqa: F811
    root, rows = docs
    cache = tmp_path / "cache"
    steps = ("  - op: filter.length\n    params: {min_chars: 2}\n"
             "  - op: embed\n"
             f"    params: {{long_text: chunks, max_chunks: 4, batch_size: 8, "
             f"cache_dir: '{cache}'}}\n")
    result = run_recipe(str(root / "*.parquet"), tmp_path / "out", steps)
    assert [r["rows_out"] for r in result.ops] == [22, 20, 20]
    table = pa.concat_tables(pq.read_table(p) for p in sorted((tmp_path / "out").glob(
        "part-*.parquet")))
    assert table["id"].to_pylist() == [r["id"] for r in rows]
    got = vectors_of(table["embedding"])

    texts = [r["text"] for r in rows]
    op = Embed(EmbedParams(long_text="chunks", max_chunks=4, batch_size=8), Context())
    want = op.encode(texts)
    assert (got * want).sum(axis=1).min() > 0.9999
    assert (op._chunker.windows(texts).per_doc > 1).any()  # some documents were chunked

    # Cached under the chunk settings, never where head vectors live.
    fingerprint = model_fingerprint(str(default_model_path()))
    chunked = EmbeddingCache(cache, model_id=fingerprint, backend="torch", max_tokens=256,
                             dim=384, long_text=chunk_key(254, 4, 0))
    found, vectors = chunked.lookup(chunked.keys(texts))
    assert found.all()
    np.testing.assert_array_equal(vectors, got)
    head = EmbeddingCache(cache, model_id=fingerprint, backend="torch", max_tokens=256, dim=384)
    assert not head.lookup(head.keys(texts))[0].any()
