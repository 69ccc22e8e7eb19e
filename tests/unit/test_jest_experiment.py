"""The JEST experiment's helper maths (benchmarks/jest_experiment.py and its data module)
against hand-computed and brute-force references."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import jest_experiment as ex  # noqa: E402
import jest_experiment_data as data  # noqa: E402

from curate.select import jest  # noqa: E402


def test_derangement_moves_every_row():
    rng = np.random.default_rng(0)
    for n in (2, 3, 10, 1000):
        idx = np.sort(rng.choice(5000, n, replace=False))
        perm = ex.derangement(idx, rng)
        assert sorted(perm) == sorted(idx) and not (perm == idx).any()


def test_split_sizes_and_noise_mask():
    rng = np.random.default_rng(1)
    n, d = 1000, 8
    short = rng.standard_normal((n, d)).astype(np.float32)
    long = short.copy()  # pair i is (v_i, v_i): a row is clean exactly when q == p
    s = ex.make_split(short, long, noise=0.3)
    assert (len(s.train_q), len(s.ref_q), len(s.test_q)) == (800, 100, 100)
    clean = (s.train_q == s.train_p).all(axis=1)
    np.testing.assert_array_equal(~clean, s.noisy)
    assert s.noisy.sum() == 240
    assert (s.ref_q == s.ref_p).all() and (s.test_q == s.test_p).all()


def test_retrieval_by_hand():
    q = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    p = np.array([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0]])
    # ranks: query 0 -> 1; query 1 -> its p (1,.1) is below (0,1): rank 2;
    # query 2 -> its p (0,1) scores 0, below both others: rank 3
    got = ex.retrieval(q, p)
    assert got["recall@1"] == pytest.approx(1 / 3)
    assert got["ndcg@10"] == pytest.approx((1 + 1 / np.log2(3) + 1 / np.log2(4)) / 3)


def test_siglip_loss_matches_the_selectors_pair_losses():
    rng = np.random.default_rng(2)
    q, p = rng.standard_normal((2, 6, 4)).astype(np.float32)
    head = ex.Head(4)
    with torch.no_grad():
        head.dq.copy_(torch.from_numpy(rng.standard_normal((4, 4)).astype(np.float32)) * 0.1)
        fq, fp = head(torch.from_numpy(q), torch.from_numpy(p))
        got = float(ex.siglip_loss(fq, fp, head))
    want = jest.pair_losses(*head.embed(q, p), *head.scale_bias).sum() / 6
    assert got == pytest.approx(want, rel=1e-5)


def test_head_starts_at_the_zero_shot_map():
    rng = np.random.default_rng(3)
    q = rng.standard_normal((5, 4)).astype(np.float32)
    fq, _ = ex.Head(4).embed(q, q)
    np.testing.assert_allclose(fq, q / np.linalg.norm(q, axis=1, keepdims=True), rtol=1e-6)


def test_speedup():
    rand = [{"step": s, "recall@1": r} for s, r in ((0, 0.1), (10, 0.2), (20, 0.3))]
    fast = [{"step": s, "recall@1": r} for s, r in ((0, 0.1), (10, 0.35), (20, 0.4))]
    slow = [{"step": s, "recall@1": r} for s, r in ((0, 0.1), (10, 0.15), (20, 0.2))]
    assert ex.speedup(rand, fast) == 2.0 and ex.speedup(rand, slow) is None


def test_parse_records_and_dedupe():
    text = ("Package: foo\nDescription-md5: 1\nDescription-en: Foo tool\n"
            " first paragraph of foo that is long enough to count as a real opening here ok\n"
            " .\n second\n\n"
            "Package: foo-data\nDescription-md5: 2\nDescription-en: Foo tool (data files)\n"
            " first paragraph of foo that is long enough to count as a real opening here ok\n"
            " .\n this package has the data\n\n"
            "Package: bar\nDescription-md5: 3\nDescription-en: bar\n tiny\n\n"
            "Package: baz\nDescription-md5: 4\nDescription-en: Foo tool\n"
            " a different long description with words enough to be kept by the length filter yes\n")
    recs = data.parse_records(text)
    assert recs[0] == ("foo", "Foo tool", "first paragraph of foo that is long enough to "
                       "count as a real opening here ok\nsecond")
    kept, counts = data.dedupe(recs)
    assert [r[0] for r in kept] == ["foo"]
    assert counts == {"records": 4, "trivial_long": 1, "dup_long": 0, "dup_first_paragraph": 1,
                      "dup_short": 1, "kept": 1}
    assert data.short_key("Foo tool (data files)") == "foo tool"


def test_independent_pick_draws_what_select_draws():
    rng = np.random.default_rng(4)
    lq, lp, rq, rp = (x / np.linalg.norm(x, axis=1, keepdims=True)
                      for x in rng.standard_normal((4, 64, 8)).astype(np.float32))
    got = ex.independent_pick(lq, lp, rq, rp, (12.0, -9.0), (10.0, -10.0), 0.75, 4,
                              np.random.default_rng(5))
    want = jest.select(learner=(lq, lp), reference=(rq, rp), filter_ratio=0.75, chunks=4,
                       score="independent", seed=np.random.default_rng(5), learner_scale=12.0,
                       learner_bias=-9.0)
    np.testing.assert_array_equal(got, want)
