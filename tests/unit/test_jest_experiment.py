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
    s = ex.make_split(1000, noise=0.3, ref_frac=0.2)
    assert (len(s.train_q), len(s.ref), len(s.val), len(s.test)) == (600, 200, 100, 100)
    parts = np.concatenate([s.train_q, s.ref, s.val, s.test])
    assert sorted(parts) == list(range(1000))  # disjoint and complete
    np.testing.assert_array_equal(s.train_q != s.train_p, s.noisy)
    assert s.noisy.sum() == 180
    # the re-paired passages are the noisy rows' own passages, shuffled among them
    assert sorted(s.train_p[s.noisy]) == sorted(s.train_q[s.noisy])


def _pairs(n: int = 6, d: int = 4, seed: int = 0) -> ex.Pairs:
    rng = np.random.default_rng(seed)
    q, p = (x / np.linalg.norm(x, axis=1, keepdims=True)
            for x in rng.standard_normal((2, n, d)).astype(np.float32))
    texts_q = [f"tool {i} for w{i}" for i in range(n)]
    texts_p = [f"the w{i} tool does w{i} things, " + "x " * i for i in range(n)]
    bags = [ex.Bags(*(lambda t: ((t[0] % 64).astype(np.int64), t[1]))(data.token_ids(t)))
            for t in (texts_q, texts_p)]
    return ex.Pairs(q, p, *bags)


def test_words_hash_and_token_ids():
    assert data.words("Foo-bar: foo BAR baz2!") == ["foo", "bar", "baz2"]
    assert data.words("a b c d", max_words=2) == ["a", "b"]
    import zlib
    assert data.word_hash("foo") == zlib.crc32(b"foo") == 2356372769  # fixed, not salted
    ids, off = data.token_ids(["foo bar foo", "", "bar"])
    np.testing.assert_array_equal(off, [0, 2, 2, 3])
    assert ids.dtype == np.uint32
    assert list(ids) == [data.word_hash("foo"), data.word_hash("bar"), data.word_hash("bar")]


def test_bags_gather_matches_python_slices():
    ids = np.arange(10, dtype=np.int64) * 7
    offsets = np.array([0, 3, 3, 7, 10])
    bags = ex.Bags(ids, offsets)
    rows = np.array([3, 0, 1, 2, 0])
    flat, bag_off, w = bags.gather(rows)
    want = [ids[offsets[r]:offsets[r + 1]] for r in rows]
    np.testing.assert_array_equal(flat.numpy(), np.concatenate(want))
    np.testing.assert_array_equal(bag_off.numpy(), np.cumsum([0] + [len(x) for x in want[:-1]]))
    np.testing.assert_allclose(w.numpy(), np.concatenate(
        [np.full(len(x), 1 / np.sqrt(len(x))) for x in want]), rtol=1e-6)


@pytest.mark.parametrize("shared", [True, False])
def test_bow_tower_by_hand(shared):
    pairs = _pairs()
    head = ex.Head(4, bow_dim=3, buckets=64, init_std=0.5, shared=shared, seed=1)
    rows = np.array([2, 0, 5])
    fq, fp = head.embed(pairs, rows, rows)
    for got, x, bags, table in ((fq, pairs.q, pairs.q_bags, head.bow_q),
                                (fp, pairs.p, pairs.p_bags, head.bow_p)):
        for k, r in enumerate(rows):
            words = bags.ids[bags.offsets[r]:bags.offsets[r + 1]]
            e = table.weight.detach().numpy()[words].sum(axis=0) / np.sqrt(len(words))
            v = np.concatenate([x[r], e])
            np.testing.assert_allclose(got[k], v / np.linalg.norm(v), rtol=1e-5, atol=1e-6)
    assert (head.bow_q is head.bow_p) == shared
    assert len(head.bow_params()) == (1 if shared else 2)


def test_head_init_is_seeded_and_near_zero_shot():
    pairs = _pairs()
    rows = np.arange(6)
    a = ex.Head(4, bow_dim=8, buckets=64, init_std=0.01, seed=3).embed(pairs, rows, rows)
    b = ex.Head(4, bow_dim=8, buckets=64, init_std=0.01, seed=3).embed(pairs, rows, rows)
    np.testing.assert_array_equal(a[0], b[0])
    # the MiniLM part is the zero-shot vector up to the small word part's share of the norm
    np.testing.assert_allclose(a[0][:, :4], pairs.q, atol=1e-3)
    sims = a[0] @ a[1].T
    np.testing.assert_allclose(sims, pairs.q @ pairs.p.T, atol=3e-3)


@pytest.mark.parametrize("shared", [True, False])
def test_sparse_step_moves_only_the_batch_words(shared):
    pairs = _pairs()
    cfg = ex.Config(bow_dim=4, buckets=64, init_std=0.1, lr_bow=0.05, shared=shared)
    head = cfg.head(4, seed=0)
    tables = ((head.bow_q, (pairs.q_bags, pairs.p_bags) if shared else (pairs.q_bags,)),
              (head.bow_p, (pairs.q_bags, pairs.p_bags) if shared else (pairs.p_bags,)))
    before = [t.weight.detach().clone() for t, _ in tables]
    opt = ex.Optimiser(head, cfg.lr, cfg.lr_bow, cfg.weight_decay)
    rows = np.array([1, 3])
    opt.step(ex.siglip_loss(*head.encode(pairs, rows, rows), head))
    for (table, sides), old in zip(tables, before, strict=True):
        moved = np.flatnonzero((table.weight.detach() != old).any(dim=1).numpy())
        touched = np.unique(np.concatenate([b.ids[b.offsets[r]:b.offsets[r + 1]]
                                            for b in sides for r in rows]))
        np.testing.assert_array_equal(moved, touched)


def test_retrieval_by_hand():
    q = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    p = np.array([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0]])
    # ranks: query 0 -> 1; query 1 -> its p (1,.1) is below (0,1): rank 2;
    # query 2 -> its p (0,1) scores 0, below both others: rank 3
    got = ex.retrieval(q, p)
    assert got["recall@1"] == pytest.approx(1 / 3)
    assert got["ndcg@10"] == pytest.approx((1 + 1 / np.log2(3) + 1 / np.log2(4)) / 3)


def test_siglip_loss_matches_the_selectors_pair_losses():
    pairs = _pairs()
    head = ex.Head(4, bow_dim=3, buckets=64, init_std=0.3, linear=True, seed=2)
    with torch.no_grad():
        head.dq.copy_(torch.from_numpy(np.random.default_rng(2).standard_normal((4, 4))
                                       .astype(np.float32)) * 0.1)
        rows = np.arange(6)
        got = float(ex.siglip_loss(*head.encode(pairs, rows, rows), head))
    want = jest.pair_losses(*head.embed(pairs, rows, rows), *head.scale_bias).sum() / 6
    assert got == pytest.approx(want, rel=1e-5)


def test_head_without_words_is_the_zero_shot_map():
    pairs = _pairs()
    fq, fp = ex.Head(4).embed(pairs, np.arange(6), np.arange(6))
    np.testing.assert_allclose(fq, pairs.q, rtol=1e-6)
    np.testing.assert_allclose(fp, pairs.p, rtol=1e-6)


def test_speedup():
    rand = [{"step": s, "recall@1": r} for s, r in ((0, 0.1), (10, 0.2), (20, 0.3))]
    fast = [{"step": s, "recall@1": r} for s, r in ((0, 0.1), (10, 0.35), (20, 0.4))]
    slow = [{"step": s, "recall@1": r} for s, r in ((0, 0.1), (10, 0.15), (20, 0.2))]
    assert ex.speedup(rand, fast) == 2.0 and ex.speedup(rand, slow) is None
    falling = [{"step": s, "recall@1": r} for s, r in ((0, 0.3), (10, 0.35), (20, 0.2))]
    assert ex.speedup(falling, fast) == "undefined"


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


def test_frozen_zero_shot_is_chance_without_a_frozen_part():
    pairs = _pairs()
    rows = np.arange(6)
    assert ex.frozen_zero_shot(pairs, rows) == ex.retrieval(pairs.q, pairs.p)
    empty = ex.Pairs(np.zeros((6, 0), np.float32), np.zeros((6, 0), np.float32),
                     pairs.q_bags, pairs.p_bags)
    got = ex.frozen_zero_shot(empty, rows)
    # every score ties: the true item's rank is uniform on 1..6
    assert got["recall@1"] == pytest.approx(1 / 6)
    assert got["ndcg@10"] == pytest.approx(np.mean(1 / np.log2(1 + np.arange(1, 7))))
    # a words-only tower still embeds (0 frozen dims + the word vector, normalised)
    fq, fp = ex.Head(0, bow_dim=3, buckets=64, init_std=0.5, shared=False).embed(empty, rows,
                                                                                  rows)
    assert fq.shape == (6, 3) and np.allclose(np.linalg.norm(fp, axis=1), 1, atol=1e-5)


def test_centred_subtracts_the_pool_mean_and_renormalises():
    pairs = _pairs(n=8, d=5, seed=3)
    q_rows, p_rows = np.array([0, 1, 2, 3]), np.array([3, 2, 1, 0])
    got = ex.centred(pairs, q_rows, p_rows)
    for x, y in ((pairs.q, got.q), (pairs.p, got.p)):
        c = x - x[:4].mean(axis=0)  # the pool rows' mean only (rows 4..7 play val / test)
        np.testing.assert_allclose(y, c / np.linalg.norm(c, axis=1, keepdims=True), rtol=1e-5)
    assert got.q.dtype == np.float32 and got.q_bags is pairs.q_bags
    # after centring, the pool's mean vector is ~0 up to the re-normalisation
    assert np.linalg.norm(got.q[:4].mean(axis=0)) < np.linalg.norm(pairs.q[:4].mean(axis=0))
