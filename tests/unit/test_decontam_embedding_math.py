"""decontam.embedding's maths without a model: spans and their offsets, sibling calibration
against brute force, the per-document choice of match, faiss search against numpy."""

from __future__ import annotations

import numpy as np
import pytest

from operators.decontam.embedding_math import (
    best_matches,
    build_index,
    default_window,
    document_spans,
    item_thresholds,
    paragraph_spans,
    search,
    sibling_cosines,
    window_spans,
    word_offsets,
)


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def words_text(rng: np.random.Generator, n: int) -> str:
    """n words joined by varied whitespace (spaces, tabs, newlines, blank lines)."""
    seps = rng.choice([" ", "  ", "\t", "\n", "\n\n", " \n \n"], n)
    return "".join(f"w{i}{s}" for i, s in enumerate(seps))


def test_word_offsets_round_trip_to_the_words():
    text = "  alpha\tbeta\n\ngamma  delta  "
    starts, ends = word_offsets(text)
    assert [text[a:b] for a, b in zip(starts, ends, strict=True)] == text.split()
    assert len(word_offsets("")[0]) == 0 and len(word_offsets(" \n ")[0]) == 0


@pytest.mark.parametrize("n, window", [(1, 5), (5, 5), (6, 5), (37, 10), (200, 16), (1000, 33)])
def test_windows_hold_window_words_overlap_by_half_and_cover_every_word(n, window):
    rng = np.random.default_rng(n)
    text = words_text(rng, n)
    starts, ends = word_offsets(text)
    spans = window_spans(starts, ends, window, max_windows=10_000)
    words = text.split()
    for a, b in spans:
        piece = text[a:b].split()
        assert piece == words[words.index(piece[0]):words.index(piece[0]) + len(piece)]
        assert len(piece) == min(window, n)
    assert spans[0][0] == starts[0] and spans[-1][1] == ends[-1]
    covered = np.zeros(n, bool)
    for a, b in spans:
        covered[(starts >= a) & (ends <= b)] = True
    assert covered.all()
    if n > window:  # consecutive windows share at least half a window of words
        firsts = [int(np.searchsorted(starts, a)) for a, _ in spans]
        assert max(np.diff(firsts)) <= window // 2


def test_a_capped_document_spreads_its_windows_over_the_whole_text():
    text = words_text(np.random.default_rng(0), 5000)
    starts, ends = word_offsets(text)
    spans = window_spans(starts, ends, 50, max_windows=20)
    assert len(spans) == 20
    assert spans[0][0] == starts[0] and spans[-1][1] == ends[-1]
    gaps = np.diff([a for a, _ in spans])
    assert gaps.min() > 0  # evenly spread, no repeats


def test_paragraph_spans_are_the_blank_line_blocks_within_the_word_bounds():
    paragraphs = ["one two three", "a b c d e f", "x", "p q r s"]
    text = "\n\n".join(paragraphs[:2]) + "\n \n\n" + paragraphs[2] + "\n\t\n" + paragraphs[3]
    starts, ends = word_offsets(text)
    got = [text[a:b] for a, b in paragraph_spans(text, starts, ends, 3, 5)]
    assert got == ["one two three", "p q r s"]
    single = "a\nb c"  # one newline is not a paragraph break
    assert [single[a:b] for a, b in paragraph_spans(single, *word_offsets(single), 1, 9)] == [
        single]


def test_document_spans_offsets_are_in_each_document_and_repeat_nothing():
    rng = np.random.default_rng(3)
    docs = [words_text(rng, int(n)) for n in rng.integers(1, 400, 30)] + [None, ""]
    spans = document_spans(docs, window=20, max_spans=8, paragraph_min_words=3)
    assert set(spans.doc.tolist()) == set(range(30))  # null and empty docs have none
    assert np.all(np.diff(spans.doc) >= 0)
    for d in range(30):
        mine = [(a, b) for dd, a, b in zip(spans.doc, spans.start, spans.end, strict=True)
                if dd == d]
        assert len(mine) == len(set(mine)) <= 3 * 8  # two window sizes and paragraphs
    for text, d, a, b in zip(spans.texts(docs), spans.doc, spans.start, spans.end,
                             strict=True):
        assert text == docs[d][a:b] and text == text.strip() and text


def test_half_windows_add_windows_of_half_the_words():
    text = words_text(np.random.default_rng(4), 300).replace("\n", " ")
    both = document_spans([text], window=40, max_spans=100, paragraph_min_words=10**6)
    full = document_spans([text], window=40, max_spans=100, paragraph_min_words=10**6,
                          half_windows=False)
    sizes = [len(t.split()) for t in both.texts([text])]
    assert set(sizes) == {40, 20}
    assert [len(t.split()) for t in full.texts([text])] == [40] * len(full)
    assert sizes.count(20) == len(window_spans(*word_offsets(text), 20, 100))


def test_default_window_is_the_median_item_length_within_bounds():
    assert default_window(np.array([10, 90, 100, 120])) == 95
    assert default_window(np.array([2, 3])) == 16
    assert default_window(np.array([900])) == 160
    assert default_window(np.array([], np.int64)) == 16


def test_sibling_cosines_equal_brute_force_within_each_group():
    rng = np.random.default_rng(1)
    x = unit(rng.standard_normal((300, 12)))
    groups = rng.integers(0, 4, 300)
    groups[7] = 9  # alone in its group
    got = sibling_cosines(x, groups, block=64)
    sims = x @ x.T
    for i in range(300):
        others = (groups == groups[i]) & (np.arange(300) != i)
        if others.any():
            assert got[i] == pytest.approx(sims[i, others].max(), abs=1e-5)
        else:
            assert np.isnan(got[i])


def test_thresholds_are_the_sibling_plus_margin_at_least_min_score():
    sibling = np.array([0.5, 0.8, np.nan, 0.95], np.float32)
    groups = np.zeros(4, np.int64)
    got = item_thresholds(sibling, groups, min_score=0.7, margin=0.1, floor_quantile=0.0)
    assert got == pytest.approx([0.7, 0.9, 0.7, 1.05])


def test_thresholds_are_capped_at_max_score_but_never_below_min_score():
    # Dense benchmark: siblings at 0.97-1.0 would need cosines above 1 (no copy matches).
    sibling = np.array([0.97, 1.0, 0.5, np.nan], np.float32)
    got = item_thresholds(sibling, np.zeros(4, np.int64), min_score=0.7, margin=0.1,
                          floor_quantile=0.0, max_score=0.95)
    assert got == pytest.approx([0.95, 0.95, 0.7, 0.7])
    low_cap = item_thresholds(sibling, np.zeros(4, np.int64), min_score=0.7, margin=0.1,
                              floor_quantile=0.0, max_score=0.6)
    assert low_cap == pytest.approx([0.7] * 4)


def test_the_floor_is_a_quantile_of_each_groups_siblings():
    sibling = np.array([0.2, 0.4, 0.6, 0.8, 0.1, 0.3, np.nan], np.float32)
    groups = np.array([0, 0, 0, 0, 1, 1, 2])
    got = item_thresholds(sibling, groups, min_score=0.0, margin=0.1, floor_quantile=0.5)
    # group 0's median sibling is 0.5, group 1's 0.2; the lone item of group 2: min_score
    assert got == pytest.approx([0.6, 0.6, 0.7, 0.9, 0.3, 0.4, 0.0])
    per_item = item_thresholds(sibling, groups, 0.0, np.array([0.1] * 4 + [0.2] * 3), 0.5)
    assert per_item == pytest.approx([0.6, 0.6, 0.7, 0.9, 0.4, 0.5, 0.0])


def test_best_match_is_the_pair_furthest_above_its_own_threshold():
    # Span 0 (doc 0): its top item 0 is below item 0's high threshold, its second item 1
    # clears item 1's: item 1. Span 1 (doc 0) clears item 2 by less. Doc 1: nothing
    # clears (its best: item 2, 0.5 - 0.72). Doc 2: no spans.
    cos = np.array([[0.90, 0.80], [0.75, 0.1], [0.6, 0.5]], np.float32)
    items = np.array([[0, 1], [2, -1], [0, 2]])
    thresholds = np.array([0.95, 0.7, 0.72], np.float32)
    m = best_matches(np.array([0, 0, 1]), cos, items, thresholds, docs=3)
    assert m.item.tolist() == [1, -1, -1]
    assert m.span.tolist() == [0, -1, -1]
    assert m.score[0] == pytest.approx(0.80) and np.isnan(m.score[1:]).all()
    assert m.best_excess[:2] == pytest.approx([0.10, 0.5 - 0.72], abs=1e-6)
    assert np.isnan(m.best_excess[2])


def test_best_match_ties_go_to_the_earlier_span():
    cos = np.array([[0.8], [0.8]], np.float32)
    m = best_matches(np.array([0, 0]), cos, np.array([[3], [3]]),
                     np.full(4, 0.7, np.float32), docs=1)
    assert m.span.tolist() == [0] and m.item.tolist() == [3]
    empty = best_matches(np.zeros(0, np.int64), np.zeros((0, 1), np.float32),
                         np.zeros((0, 1), np.int64), np.zeros(1, np.float32), docs=2)
    assert empty.item.tolist() == [-1, -1]


def test_flat_search_equals_numpy_top_k():
    rng = np.random.default_rng(5)
    x, q = unit(rng.standard_normal((500, 32))), unit(rng.standard_normal((40, 32)))
    cos, items = search(build_index(x, ivf_above=10_000, nprobe=1, seed=0), q, 5)
    sims = q @ x.T
    want = np.argsort(-sims, axis=1, kind="stable")[:, :5]
    assert np.array_equal(items, want)
    assert np.allclose(cos, np.take_along_axis(sims, want, axis=1), atol=1e-5)


def test_ivf_probing_every_list_equals_exact_search():
    rng = np.random.default_rng(6)
    x, q = unit(rng.standard_normal((2000, 16))), unit(rng.standard_normal((30, 16)))
    ivf = build_index(x, ivf_above=100, nprobe=1000, seed=0)
    assert ivf.ntotal == 2000 and hasattr(ivf, "nprobe")
    cos, items = search(ivf, q, 3)
    want = np.argsort(-(q @ x.T), axis=1, kind="stable")[:, :3]
    assert np.array_equal(items, want)


def test_search_pads_when_the_index_holds_fewer_than_k():
    x = unit(np.eye(3, 8, dtype=np.float32))
    cos, items = search(build_index(x, 10, 1, 0), x[:2], 8)
    assert items.shape == (2, 3) and items[:, 0].tolist() == [0, 1]
    assert search(build_index(x, 10, 1, 0), np.zeros((0, 8), np.float32), 2)[1].shape == (0, 2)
