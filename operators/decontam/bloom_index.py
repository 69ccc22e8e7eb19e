"""`decontam.ngram` with `index: bloom`: the items' distinctive grams in a Bloom filter.

The filter holds the same grams as the exact index (after the template filter), salted
per benchmark; short items (fewer than n words) are not stored. A row's grams are
tested against every benchmark's salt, and its score for a benchmark is the longest
*chain* of consecutive member grams (Data Portraits' `longest_chain`, algorithms.md
3.4): a chain of c grams is c + n - 1 words copied in order. Requiring a chain of
`min_chain` grams makes a chance hit (probability ~p per gram) flag a row with
probability ~p^min_chain per position. The filter cannot say which item a gram came
from, so a flagged row names the benchmark and `matched_id` is null.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from operators.decontam.benchmark_sets import BenchmarkItems
from operators.decontam.bloom import BloomFilter, salted
from operators.decontam.ngram_hashing import Words, grams
from operators.decontam.ngram_index import Matches, build_index


@dataclass(frozen=True)
class BloomIndex:
    n: int
    filter: BloomFilter
    names: list[str]  # benchmarks, by salt index
    figures: dict

    @property
    def nbytes(self) -> int:
        return self.filter.nbytes


def build_bloom(items: BenchmarkItems, n: int, max_item_frequency: int, error_rate: float
                ) -> BloomIndex:
    """The filter of every item's distinctive n-grams (see the module doc)."""
    exact = build_index(items, n, max_item_frequency, min_words=n)
    names = sorted(set(items.benchmarks))
    salt = {b: i for i, b in enumerate(names)}
    bench = np.array([salt[b] for b in items.benchmarks], np.int64)[exact.items]
    keys = [np.unique(salted(exact.grams[bench == b], b)) for b in range(len(names))]
    stored = int(sum(len(k) for k in keys))
    bloom = BloomFilter.sized(stored, error_rate)
    for k in keys:
        bloom.add(k)
    figures = {**exact.figures, "bloom_bits": bloom.m, "bloom_hashes": bloom.k,
               "bloom_stored_grams": stored, "bloom_error_rate": error_rate,
               "bloom_computed_error_rate": bloom.computed_error_rate}
    figures.pop("items_short_whole_gram", None)
    return BloomIndex(n, bloom, names, figures)


def bloom_match(index: BloomIndex, w: Words) -> Matches:
    """Each row's benchmark with the longest chain of member grams (ties: the first
    benchmark); `item` is the benchmark's index into `index.names`."""
    nrows = len(w.first) - 1
    out = Matches(np.full(nrows, -1, np.int64), np.zeros(nrows), np.zeros(nrows, np.int64),
                  np.zeros(nrows, np.int64))
    g, start = grams(w, (index.n,))[index.n]
    for b in range(len(index.names)):
        hit = index.filter.contains(salted(g, b))
        pos = start[hit]
        if not len(pos):
            continue
        row = w.row[pos]
        new = np.ones(len(pos), bool)
        new[1:] = (pos[1:] != pos[:-1] + 1) | (row[1:] != row[:-1])
        chain = np.cumsum(new) - 1
        length = np.bincount(chain)
        head = pos[new]
        crow = row[new]
        # Longest chain per row (first of equals): sort by row, then length descending.
        best = np.lexsort((head, -length, crow))
        lead = np.ones(len(best), bool)
        lead[1:] = crow[best][1:] != crow[best][:-1]
        best = best[lead]
        r, L = crow[best], length[best].astype(np.float64)
        better = out.score[r] < L
        r, best, L = r[better], best[better], L[better]
        out.item[r] = b
        out.score[r] = L
        out.first_word[r] = head[best] - w.first[r]
        out.end_word[r] = head[best] + length[best] - 1 + index.n - w.first[r]
    return out
