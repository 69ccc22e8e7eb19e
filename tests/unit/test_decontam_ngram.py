"""decontam.ngram maths: normalisation, gram hashes, scores, short items, template filter,
Bloom false-positive rate; no Ray."""

from __future__ import annotations

import numpy as np
import xxhash

from operators.decontam.benchmark_sets import BenchmarkItems
from operators.decontam.bloom import BloomFilter
from operators.decontam.bloom_index import bloom_match, build_bloom
from operators.decontam.ngram_hashing import char_spans, grams, mix, words
from operators.decontam.ngram_index import build_index, match

M64 = (1 << 64) - 1


def items_of(texts: list[str], bench: str = "b") -> BenchmarkItems:
    n = len(texts)
    return BenchmarkItems([f"i{k}" for k in range(n)], [bench] * n, texts, ["f"] * n,
                          list(range(n)))


def ref_gram_hash(toks: list[str]) -> int:
    """Pure-Python reference of a gram's hash: the polynomial of xxh3-64 word hashes."""
    acc = 0
    for t in toks:
        acc = (acc * 0x9E3779B97F4A7C15 + xxhash.xxh3_64_intdigest(t.encode())) & M64
    acc = (acc + len(toks) * 0xD6E8FEB86659FD93) & M64
    return int(mix(np.array([acc], np.uint64))[0])


def test_normalisation_lowercases_and_strips_punctuation():
    w = words(["Hello,  WORLD!\tfoo_bar <<7*3=21>>21", None, "  ", "Ünïcode café"])
    expect = ["hello", "world", "foo", "bar", "7", "3", "21", "21", "ünïcode", "café"]
    ref = [xxhash.xxh3_64_intdigest(t.encode()) for t in expect]
    assert w.hashes.tolist() == ref
    assert w.first.tolist() == [0, 8, 8, 8, 10]


def test_gram_hashes_match_the_python_reference_and_stay_inside_rows():
    texts = ["a b c d e", "f g h"]
    w = words(texts)
    out = grams(w, [1, 3, 4])
    toks = [t.split() for t in texts]
    for k, (g, start) in out.items():
        expect = [(ref_gram_hash(r[i:i + k]), w.first[j] + i) for j, r in enumerate(toks)
                  for i in range(len(r) - k + 1)]
        assert list(zip(g.tolist(), start.tolist(), strict=True)) == expect
    assert len(out[4][0]) == 2  # "f g h" has no 4-gram, and none crosses into it


def ref_score(items: list[str], row: str, n: int, max_freq: int) -> list[float]:
    """Brute-force reference of the weighted share of each item's grams in `row`."""
    def gs(text: str) -> set:
        t = text.lower().split()
        return {tuple(t[i:i + n]) for i in range(len(t) - n + 1)}
    sets = [gs(t) for t in items]
    df: dict = {}
    for s in sets:
        for g in s:
            df[g] = df.get(g, 0) + 1
    r = gs(row)
    out = []
    for s in sets:
        keep = [g for g in s if df[g] <= max_freq]
        total = sum(1 / df[g] for g in keep)
        out.append(sum(1 / df[g] for g in keep if g in r) / total if total else 0.0)
    return out


def test_scores_equal_the_brute_force_reference():
    rng = np.random.default_rng(0)
    vocab = [f"w{i}" for i in range(40)]
    items = [" ".join(rng.choice(vocab, 30)) for _ in range(20)]
    rows = [" ".join(rng.choice(vocab, 200)), items[3], items[5][:60] + " x " + items[7]]
    index = build_index(items_of(items), n=3, max_item_frequency=4, min_words=3)
    m = match(index, words(rows))
    for r, row in enumerate(rows):
        ref = ref_score(items, row, 3, 4)
        best = int(np.argmax(ref))
        assert abs(m.score[r] - ref[best]) < 1e-6
        if ref[best] > 0:
            assert m.item[r] == best
    assert m.score[1] == 1.0 and m.item[1] == 3


def test_span_is_first_to_last_matched_gram_in_characters():
    item = "Tom has seven red apples and gives two of them to Ann"
    row = "Intro text here.\n\nTOM has seven red apples, and gives two of them to ann! End."
    index = build_index(items_of([item]), n=4)
    w = words([row])
    m = match(index, w)
    assert m.score[0] == 1.0
    s, e = char_spans(row, int(w.counts[0]))
    assert row[s[m.first_word[0]]:e[m.end_word[0] - 1]] == (
        "TOM has seven red apples, and gives two of them to ann")


def test_short_items_are_one_whole_gram_above_min_words():
    items = ["one two three four five", "alpha beta", "x " * 20]
    index = build_index(items_of(items), n=8, min_words=4)
    assert index.short_lengths == (5,)
    assert index.figures["items_too_short"] == 1 and index.figures["items_short_whole_gram"] == 1
    m = match(index, words(["so one two three four five six", "one two three four", "alpha beta"]))
    assert m.item.tolist() == [0, -1, -1] and m.score[0] == 1.0


def test_template_grams_shared_by_many_items_do_not_count():
    template = "please answer the following question with a single number at the end"
    items = [f"{template} item {k} asks about {k * 7} quite specific marbles in jar {k}"
             for k in range(12)]
    index = build_index(items_of(items), n=4, max_item_frequency=10)
    assert index.figures["template_grams_removed"] > 0
    near_miss = f"{template} item 99 asks about 693 quite different pebbles in box 99"
    m = match(index, words([near_miss, items[4]]))
    assert m.score[0] < 0.2 < 1.0 == m.score[1]
    assert m.item[1] == 4


def test_bloom_false_positive_rate_is_within_twice_the_configured():
    rng = np.random.default_rng(1)
    keys = rng.integers(0, 2**63, 50_000, dtype=np.int64).astype(np.uint64)
    f = BloomFilter.sized(len(keys), 1e-3)
    f.add(keys)
    assert f.contains(keys).all()  # no false negatives
    others = rng.integers(2**63, 2**64 - 1, 1_000_000, dtype=np.uint64)
    measured = f.contains(others).mean()
    assert measured <= 2e-3, measured
    assert abs(f.computed_error_rate - 1e-3) < 2e-4


def test_bloom_index_names_the_benchmark_and_the_longest_chain():
    item = "the farmer sold forty two eggs at the market on a sunny tuesday morning"
    items = BenchmarkItems(["a", "b"], ["gsm", "other"],
                           [item, "completely unrelated words in another benchmark item here"],
                           ["f", "f"], [0, 1])
    index = build_bloom(items, 4, 10, 1e-6)
    m = bloom_match(index, words([f"noise noise {item} noise", "nothing like it at all"]))
    assert index.names[m.item[0]] == "gsm" and m.score[0] == len(item.split()) - 3
    assert m.item[1] == -1
    assert 0 < index.figures["bloom_computed_error_rate"] <= 2e-6


def test_one_shared_phrase_of_a_short_item_is_not_enough():
    item = "Which American-born Sinclair won the Nobel Prize for Literature in 1930?"
    index = build_index(items_of([item]), n=7)
    topic = "Many writers won the Nobel Prize for Literature in their fifties."
    copy = "Quiz: which American born Sinclair won the Nobel Prize for Literature?"
    one, two = match(index, words([topic, copy]), 1), match(index, words([topic, copy]), 2)
    assert one.item.tolist() == [0, 0] and one.score[0] > 0.1  # 1 of the item's 6 grams
    assert two.item.tolist() == [-1, 0] and two.score[1] == one.score[1]
