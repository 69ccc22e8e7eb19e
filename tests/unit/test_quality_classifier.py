"""train_quality + quality.classifier: held-out AUC, save/load, threshold and top-fraction
decisions through the in-process executor (same step semantics as the Ray plan)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from curate.recipe import RecipeError, parse_recipe
from curate.train_quality import train_quality
from operators.quality.classifier import MANIFEST, FeatureConfig, QualityModel, load_model
from pipelines import columns as C
from pipelines.inprocess import run_operators
from pipelines.reader import read_shard
from pipelines.shards import discover
from tests.conftest import write_quality_split


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """The sample quality set (YouTube ham = positive, spam = negative) as two files."""
    return write_quality_split(tmp_path_factory.mktemp("quality"))


@pytest.fixture(scope="module")
def trained(data):
    out = data / "model"
    report = train_quality(str(data / "pos.parquet"), str(data / "neg.parquet"), str(out),
                           n_features=2**18)
    return out, report


def test_held_out_auc_is_high(trained):
    _, report = trained
    assert report["auc"] > 0.9 and report["accuracy"] > 0.8
    n = report["n_train"]["positive"] + report["n_train"]["negative"]
    m = report["n_test"]["positive"] + report["n_test"]["negative"]
    assert n + m == 720 and 0.1 < m / (n + m) < 0.3
    assert min(report["n_test"].values()) > 20


def test_split_keeps_duplicate_texts_on_one_side(data):
    from curate.train_quality import _in_test

    texts = ["Check out my channel!", "check  out my CHANNEL!", "a different comment"] * 50
    mask = _in_test(texts, 0.5, seed=0)
    assert len(set(mask[0::3].tolist() + mask[1::3].tolist())) == 1


def test_save_load_round_trip(trained, tmp_path):
    out, report = trained
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["report"]["auc"] == report["auc"]
    assert manifest["features"]["n_features"] == 2**18
    model = QualityModel.load(out)
    texts = ["Subscribe to my channel for free gifts http://spam.example",
             "This song always reminds me of summer with my family."]
    scores = model.score(texts)
    assert scores[0] < 0.5 < scores[1]
    copy = model.save(tmp_path / "copy")
    again = QualityModel.load(copy)
    np.testing.assert_array_equal(again.coef, model.coef)
    np.testing.assert_array_equal(again.score(texts), scores)
    assert load_model(copy) is load_model(copy)  # cached per process


def test_not_a_model_is_a_clear_error(tmp_path):
    (tmp_path / MANIFEST).write_text(json.dumps({"kind": "something-else"}))
    with pytest.raises(ValueError, match="kind/version"):
        QualityModel.load(tmp_path)


def test_one_class_split_is_refused(tmp_path):
    pq.write_table(pa.table({"text": ["good text"] * 3}), tmp_path / "p.parquet")
    pq.write_table(pa.table({"text": ["bad text"] * 3}), tmp_path / "n.parquet")
    with pytest.raises(ValueError, match="lacks one class"):
        train_quality(str(tmp_path / "p.parquet"), str(tmp_path / "n.parquet"),
                      str(tmp_path / "m"), n_features=2**10)


def run_step(data, params: str) -> tuple[pa.Table, dict]:
    pattern = str(data / "all.parquet")
    loaded = parse_recipe(f"name: t\ninput: {{path: '{pattern}'}}\noutput: {{path: o}}\n"
                          f"steps:\n  - op: quality.classifier\n    params: {params}\n")
    batches = [b for s in discover(pattern, "auto", "text", "id")
               for b in read_shard(s, "text", "id", 8_000_000, 200)]
    assert len(batches) > 1
    metrics: dict = {}
    out = pa.concat_tables(run_operators(batches, loaded.operators, metrics))
    return out.sort_by(C.ORDER), metrics.get(1, {})


def test_threshold_drops_low_scores_and_records_every_score(data, trained):
    out, _ = run_step(data, f"{{model: '{trained[0]}', threshold: 0.5}}")
    score = out[C.signal_column(1, "quality_score")].to_numpy()
    dropped = pc.is_valid(out[C.DROP_STEP]).to_numpy(zero_copy_only=False)
    assert not np.isnan(score).any()
    np.testing.assert_array_equal(dropped, score < 0.5)
    assert set(out.filter(pa.array(dropped))[C.REASON].to_pylist()) == {"low_quality"}
    labels = np.array(out["label"].to_pylist())
    assert (labels[dropped] == "spam").mean() > 0.8  # mostly spam removed


def test_top_fraction_keeps_exactly_the_best(data, trained):
    out, metrics = run_step(data, f"{{model: '{trained[0]}', top_fraction: 0.25}}")
    score = out[C.signal_column(1, "quality_score")].to_numpy()
    kept = pc.is_null(out[C.DROP_STEP]).to_numpy(zero_copy_only=False)
    assert kept.sum() == round(0.25 * 720) == metrics["rows_kept"]
    assert score[kept].min() >= score[~kept].max()
    assert metrics["cut_score"] == pytest.approx(score[kept].min())
    assert not [c for c in out.column_names if c.startswith("_qc")]  # temporaries dropped
    detail = out.filter(pa.array(~kept))[C.DETAIL].to_pylist()[0]
    assert "outside top_fraction=0.25" in detail


def test_top_fraction_above_half_names_the_dropped_rows(data, trained):
    out, metrics = run_step(data, f"{{model: '{trained[0]}', top_fraction: 0.9}}")
    kept = pc.is_null(out[C.DROP_STEP]).to_numpy(zero_copy_only=False)
    assert kept.sum() == 648 == metrics["rows_kept"]


def test_annotate_drops_nothing(data, trained):
    out, _ = run_step(data, f"{{model: '{trained[0]}', top_fraction: 0.1, action: annotate}}")
    assert out[C.DROP_STEP].null_count == out.num_rows


def test_params_validation(trained, tmp_path):
    base = ("name: t\ninput: {path: x.parquet}\noutput: {path: o}\nsteps:\n"
            "  - op: quality.classifier\n    params: {PARAMS}\n")
    with pytest.raises(RecipeError, match="either threshold or top_fraction"):
        parse_recipe(base.replace("PARAMS", f"model: '{trained[0]}', threshold: 0.3, "
                                            "top_fraction: 0.5"))
    with pytest.raises(RecipeError, match="no quality model"):
        parse_recipe(base.replace("PARAMS", f"model: '{tmp_path}'"))


def test_feature_config_round_trips():
    cfg = FeatureConfig(n_features=16, word_ngrams=(1, 3))
    from dataclasses import asdict

    assert FeatureConfig.from_dict(json.loads(json.dumps(asdict(cfg)))) == cfg
