"""The in-process executor is a full reference: for every registered operator, a run in
this process writes the same output shards (byte for byte) and the same dropped and
signals rows as the same run through Ray."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from curate.recipe import parse_recipe
from curate.train_quality import train_quality
from operators import registry
from pipelines.runner import run
from tests.conftest import SAMPLES, run_outputs, write_quality_split

pytestmark = [pytest.mark.ray,
              pytest.mark.skipif(not SAMPLES.exists(), reason="shared sample corpus absent")]

# Params each operator needs to run (or to exercise its global stages); rows of input.
CASES = {
    "quality.classifier": ({"top_fraction": 0.7}, 600),
    "embed": ({"batch_size": 16}, 60),
    "dedup.minhash": ({"threshold": 0.7}, 600),
    "dedup.semantic": ({"k": 3, "eps": 0.05}, 60),
    "select.prototypes": ({"k": 3, "keep_fraction": 0.8}, 60),
    "select.balanced": ({"target_fraction": 0.5, "levels": [4, 2]}, 60),
    # The decontam ops get `benchmarks` from the `bench` fixture: 40 GSM8K items.
    "decontam.ngram": ({"id_column": "bench_id"}, 600),
    "decontam.embedding": ({"id_column": "bench_id", "backend": "torch", "batch_size": 8,
                            "item_halves": False, "half_windows": False, "max_spans": 4},
                           60),
    # The corpus has no pairs: text against id is a pair all the same. A torch learner cut
    # to 16 tokens, not the default static one (building it takes minutes on a new clone).
    "select.jest": ({"left_column": "text", "right_column": "id", "super_batch": 20,
                     "filter_ratio": 0.5, "chunks": 2,
                     "learner": {"backend": "torch", "max_tokens": 16}}, 60),
}
_EMBED = [{"op": "embed", "params": {"batch_size": 16}}]
NEEDS = {"dedup.semantic": _EMBED, "select.prototypes": _EMBED,  # earlier steps
         "select.balanced": _EMBED}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Two shards cut from the sample corpus, with exact copies planted across them."""
    root = tmp_path_factory.mktemp("reference")
    corpus = pa.concat_tables([pq.read_table(p) for p in sorted((SAMPLES / "corpus")
                                                                   .glob("*.parquet"))])
    corpus = corpus.select(["id", "text"])
    for n in (600, 60):
        part = corpus.slice(0, n)
        copies = part.slice(0, n // 10).set_column(
            0, "id", pc.binary_join_element_wise(part["id"].slice(0, n // 10), "copy", "-"))
        folder = root / str(n)
        folder.mkdir()
        pq.write_table(part.slice(0, n // 2), folder / "a.parquet")
        pq.write_table(pa.concat_tables([part.slice(n // 2), copies]), folder / "b.parquet")
    return root


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    """A small benchmark file: the first 40 GSM8K items of the samples (the embedding op
    embeds every item three times, whole and halves, in each engine)."""
    path = tmp_path_factory.mktemp("bench") / "gsm8k-40.parquet"
    pq.write_table(pq.read_table(SAMPLES / "bench.parquet").slice(0, 40), path)
    return path


@pytest.fixture(scope="module")
def quality_model(tmp_path_factory):
    root = write_quality_split(tmp_path_factory.mktemp("qmodel"))
    train_quality(str(root / "pos.parquet"), str(root / "neg.parquet"), str(root / "m"),
                  n_features=2**16)
    return root / "m"


def _run(name, params, input_glob, out, engine):
    import yaml

    recipe = {"name": "reference", "input": {"path": input_glob},
              "output": {"path": str(out), "rows_per_shard": 200},
              "execution": {"engine": engine, "concurrency": 1},
              "steps": [{"op": "text.normalize"}, *NEEDS.get(name, []),
                        {"op": name, "name": "under-test", "params": params}]}
    loaded = parse_recipe(yaml.safe_dump(recipe))
    return run(loaded.run_spec(), loaded.operators)


@pytest.mark.parametrize("name", sorted(registry.catalogue()))
def test_in_process_run_equals_the_ray_run(ray_session, inputs, quality_model, bench, tmp_path,
                                           name):
    params, rows = CASES.get(name, ({}, 600))
    if name == "quality.classifier":
        params = {**params, "model": str(quality_model)}
    if name.startswith("decontam."):
        params = {**params, "benchmarks": [str(bench)]}
    glob = str(inputs / str(rows) / "*.parquet")
    on_ray = _run(name, params, glob, tmp_path / "ray", "ray")
    local = _run(name, params, glob, tmp_path / "local", "inprocess")
    got, want = run_outputs(tmp_path / "local"), run_outputs(tmp_path / "ray")
    assert any(k.startswith("part-") for k in want)
    assert got.keys() == want.keys()
    for key in want:
        assert got[key] == want[key], f"{name}: {key} differs"
    strip = [{k: v for k, v in r.items() if k not in ("run_id", "seconds")} for r in on_ray.ops]
    assert strip == [{k: v for k, v in r.items() if k not in ("run_id", "seconds")}
                     for r in local.ops]
