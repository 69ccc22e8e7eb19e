"""The exact n-gram index of benchmark items, and matching rows against it.

Build [GPT-3 App. C; algorithms.md 3.1]: each item's distinct word n-grams (the
operator's n: 7 by default, GPT-3 used 13; docs/contamination.md says why); an item
shorter than n words contributes its whole word sequence as one gram when it has at
least `min_words` words, and is left out (counted in the metrics) below that, since a
2-word "answer" would flag every document holding those 2 words.

Template filter: a gram found in more than `max_item_frequency` items of the same
benchmark (GPT-3 drops n-grams seen more than 10 times) is the task's template,
instruction or answer format ("how much money does she have left", "the answer is"),
not any one item's content, and is removed. What remains are each item's *distinctive*
grams, and an item is scored on those only: score(row, item) = the share of the item's
distinctive grams found in the row. A document holding a different item of the same
task then shares only the template grams, which no longer count, while a leaked item,
even with words dropped or sentences reordered, keeps a large share of its own.

The index is sorted numpy arrays (gram hash, item, weight) plus per-item figures, about
16 bytes per distinct (gram, item) pair, and a bit set of the grams' low bits (16 bits
per gram). A batch of rows is matched with one bit lookup per gram, then a
`searchsorted` of the ~1/16 of a clean corpus's grams that pass; only hits are expanded.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from operators.decontam.benchmark_sets import BenchmarkItems
from operators.decontam.ngram_hashing import Words, grams, words


@dataclass(frozen=True)
class NgramIndex:
    """Distinctive grams of benchmark items (see the module doc)."""

    n: int
    grams: np.ndarray        # uint64, sorted
    items: np.ndarray        # int32, the item of each gram (sorted by (gram, item))
    weights: np.ndarray      # float32 per gram: 1 / the items of its benchmark holding it
    distinct: np.ndarray     # int32 per item: its distinctive grams
    total: np.ndarray        # float64 per item: the sum of its grams' weights (denominator)
    ids: list[str]
    benchmarks: list[str]    # per item
    short_lengths: tuple[int, ...]  # word counts (< n) of items indexed as one whole gram
    figures: dict            # build figures for the step's metrics
    screen: np.ndarray       # uint8 bit set of gram hashes' low bits (see `screen_bits`)

    @property
    def nbytes(self) -> int:
        return int(self.grams.nbytes + self.items.nbytes + self.weights.nbytes
                   + self.distinct.nbytes + self.total.nbytes + self.screen.nbytes)

    def candidates(self, g: np.ndarray) -> np.ndarray:
        """Whether each gram may be in the index: one bit lookup, so only ~1/16 of a
        clean corpus's grams go on to the binary search."""
        slot = g & np.uint64(self.screen.size * 8 - 1)
        return ((self.screen[(slot >> np.uint64(3)).astype(np.int64)]
                 >> (slot & np.uint64(7)).astype(np.uint8)) & np.uint8(1)).astype(bool)

    @property
    def lengths(self) -> tuple[int, ...]:
        return (*self.short_lengths, self.n)


def item_grams(items: BenchmarkItems, n: int, min_words: int
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(gram, item) of every distinct gram of every item, and each item's word count."""
    w = words(items.texts)
    counts = w.counts
    lengths = {n, *{int(c) for c in counts if min_words <= c < n}}
    by_length = grams(w, lengths)
    gram_parts, item_parts = [], []
    for k, (g, start) in by_length.items():
        row = w.row[start]
        # Full n-grams for items of >= n words; the whole sequence for shorter ones.
        keep = counts[row] >= n if k == n else counts[row] == k
        gram_parts.append(g[keep])
        item_parts.append(row[keep])
    g = np.concatenate(gram_parts)
    it = np.concatenate(item_parts).astype(np.int64)
    order = np.lexsort((g, it))
    g, it = g[order], it[order]
    first = np.ones(len(g), bool)
    first[1:] = (g[1:] != g[:-1]) | (it[1:] != it[:-1])
    return g[first], it[first], counts


def screen_bits(grams: np.ndarray) -> np.ndarray:
    """A bit set of 2^b bits, b giving >= 16 bits per distinct gram (a clean gram passes
    with probability <= 1/16), with the bit of each gram's low b bits set."""
    b = int(np.clip(np.ceil(np.log2(max(len(grams), 1) * 16)), 10, 34))
    bits = np.zeros(1 << (b - 3), np.uint8)
    slot = grams & np.uint64((1 << b) - 1)
    np.bitwise_or.at(bits, (slot >> np.uint64(3)).astype(np.int64),
                     np.left_shift(np.uint8(1), (slot & np.uint64(7)).astype(np.uint8)))
    return bits


def build_index(items: BenchmarkItems, n: int = 7, max_item_frequency: int = 10,
                min_words: int = 8) -> NgramIndex:
    """The index of `items` (see the module doc)."""
    g, it, counts = item_grams(items, n, min_words)
    names, bench = np.unique(np.array(items.benchmarks, dtype=object), return_inverse=True)
    # Items per (benchmark, gram): each (gram, item) pair is distinct, so count pairs.
    b = bench[it].astype(np.uint64)
    order = np.lexsort((g, b))
    gs, bs = g[order], b[order]
    starts = np.ones(len(gs), bool)
    starts[1:] = (gs[1:] != gs[:-1]) | (bs[1:] != bs[:-1])
    group = np.cumsum(starts) - 1
    freq = np.bincount(group)[group]
    df = np.empty(len(g), np.int64)
    df[order] = freq
    common = df > max_item_frequency
    g, it, df = g[~common], it[~common], df[~common]
    order = np.lexsort((it, g))
    g, it, df = g[order], it[order].astype(np.int32), df[order]
    weights = (1.0 / df).astype(np.float32)
    distinct = np.bincount(it, minlength=len(items)).astype(np.int32)
    total = np.bincount(it, weights=weights, minlength=len(items))
    indexed = counts >= min(min_words, n)
    short = sorted({int(c) for c in counts if min_words <= c < n})
    figures = {
        "items": len(items), "benchmarks": len(names), "n": n,
        "grams": len(g), "distinct_grams": int(len(np.unique(g))),
        "template_grams_removed": int(common.sum()),
        "items_too_short": int((~indexed).sum()),
        "items_short_whole_gram": int(((counts < n) & indexed).sum()),
        "items_without_distinctive_grams": int((indexed & (distinct == 0)).sum()),
    }
    return NgramIndex(n, g, it, weights, distinct, total, list(items.ids), list(items.benchmarks),
                      tuple(short), figures, screen_bits(g))


@dataclass(frozen=True)
class Matches:
    """The best item of each row: item -1 where nothing matched."""

    item: np.ndarray        # int64 per row
    score: np.ndarray       # float64 per row (0 where no match)
    first_word: np.ndarray  # int64 per row: first word of the first matched gram (in row)
    end_word: np.ndarray    # int64 per row: one past the last word of the last matched gram


def hits(index: NgramIndex, w: Words) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every (row, pair, start, end) where a row's gram equals an index gram; `pair`
    indexes `index.grams`/`index.items`, start/end are word positions in the flat batch."""
    rows, pairs, starts, ends = [], [], [], []
    for k, (g, start) in grams(w, index.lengths).items():
        maybe = index.candidates(g)
        g, start = g[maybe], start[maybe]
        lo = np.searchsorted(index.grams, g, "left")
        hi = np.searchsorted(index.grams, g, "right")
        found = hi > lo
        lo, hi, start = lo[found], hi[found], start[found]
        # A gram held by several items (at most max_item_frequency): one hit per item.
        many = hi - lo
        at = np.repeat(lo - np.cumsum(many) + many, many) + np.arange(int(many.sum()))
        start = np.repeat(start, many)
        rows.append(w.row[start])
        pairs.append(at)
        starts.append(start)
        ends.append(start + k)
    return (np.concatenate(rows), np.concatenate(pairs), np.concatenate(starts),
            np.concatenate(ends))


def match(index: NgramIndex, w: Words, min_grams: int = 1) -> Matches:
    """Each row's best item by score (ties: the earlier item) and the matched span.

    An item counts for a row only when the row holds at least `min_grams` of its
    distinctive grams (all of them, for an item with fewer): one shared 7-word phrase
    ("won the nobel prize for literature in") is topic, not a copy, even when it is a
    large share of a short item.
    """
    nrows = len(w.first) - 1
    out = Matches(np.full(nrows, -1, np.int64), np.zeros(nrows), np.zeros(nrows, np.int64),
                  np.zeros(nrows, np.int64))
    row, pair, start, end = hits(index, w)
    if not len(row):
        return out
    item = index.items[pair].astype(np.int64)
    # Distinct grams per (row, item): a gram repeated in the row counts once.
    key = np.unique(np.stack([row, item, pair]), axis=1)
    ri, group = np.unique(key[:2], axis=1, return_inverse=True)
    found = np.bincount(group, weights=index.weights[key[2]], minlength=ri.shape[1])
    score = np.minimum(found / np.maximum(index.total[ri[1]], 1e-12), 1.0)
    enough = np.bincount(group, minlength=ri.shape[1]) >= np.minimum(
        min_grams, index.distinct[ri[1]])
    ri, score = ri[:, enough], score[enough]
    if not len(score):
        return out
    best = np.lexsort((ri[1], -score, ri[0]))
    lead = np.ones(len(best), bool)
    lead[1:] = ri[0][best][1:] != ri[0][best][:-1]
    best = best[lead]
    brow, bitem = ri[0][best], ri[1][best]
    out.item[brow] = bitem
    out.score[brow] = score[best]
    # Span of the best item's hits in each row.
    chosen = out.item[row] == item
    first = np.full(nrows, np.iinfo(np.int64).max)
    last = np.zeros(nrows, np.int64)
    np.minimum.at(first, row[chosen], start[chosen])
    np.maximum.at(last, row[chosen], end[chosen])
    out.first_word[brow] = first[brow] - w.first[brow]
    out.end_word[brow] = last[brow] - w.first[brow]
    return out
