"""Word n-gram repetition statistics for a whole batch at once (Gopher, Rae et al. 2021,
App. A Table A1; definitions as in datatrove `gopher_repetition_filter.py`).

N-grams are identified exactly (no lossy hashing): the id of the n-gram starting at word i is
the dense rank of (id of the (n-1)-gram at i, word i+n-1), and the 1-gram id already
includes the document, so equal ids never cross documents. One hash factorisation per n
gives every n-gram's count and first occurrence for the whole batch (ids are numbered
by first appearance).

- top n-gram fraction: count x length of the most frequent n-gram (words joined by single
  spaces) / characters of the text. Ties go to the n-gram seen first. A text shorter than n
  words has no n-gram and scores 0.
- duplicate n-gram fraction: walk the words; at an n-gram already seen, add its length (the
  words' characters, no separators) and jump n words ahead, otherwise remember it and step
  one word. Only the positions where an n-gram repeats are visited in Python.
"""

from __future__ import annotations

from bisect import bisect_left

import numpy as np
import pandas as pd

from operators.quality.words import Tokens


def ngram_fractions(tokens: Tokens, token_len: np.ndarray, text_len: np.ndarray,
                    top_ns: tuple[int, ...], dup_ns: tuple[int, ...]
                    ) -> dict[tuple[str, int], np.ndarray]:
    """{("top", n): fraction, ("dup", n): fraction} per text, each an array over texts."""
    n_docs = len(tokens.offsets) - 1
    out: dict[tuple[str, int], np.ndarray] = {}
    for n in top_ns:
        out[("top", n)] = np.zeros(n_docs)
    for n in dup_ns:
        out[("dup", n)] = np.zeros(n_docs)
    wanted = set(top_ns) | set(dup_ns)
    ids = tokens.ids
    if not wanted or len(ids) == 0:
        return out
    doc = tokens.doc_index
    starts, counts = tokens.offsets[:-1], tokens.counts
    remaining = tokens.offsets[1:][doc] - np.arange(len(ids))  # words from i to text end
    cumlen = np.zeros(len(ids) + 1, np.int64)
    np.cumsum(token_len, out=cumlen[1:])
    vocab = int(ids.max()) + 1
    gram = _codes(doc * vocab + ids)
    # Only an n-gram whose (n-1)-gram prefix repeats can repeat, so each round keeps just
    # the positions whose n-gram occurs at least twice: usually a small, shrinking set.
    pos = np.flatnonzero(np.bincount(gram)[gram] >= 2)
    gram = gram[pos]
    for n in range(2, max(wanted) + 1):
        keep = remaining[pos] >= n
        pos, gram = pos[keep], gram[keep]
        gram = _codes(gram * vocab + ids[pos + n - 1])
        freq = np.bincount(gram)
        if n in top_ns:
            chars = np.zeros(n_docs)
            # a text without a repeated n-gram: its first n-gram, once
            one = counts >= n
            chars[one] = (cumlen[starts[one] + n] - cumlen[starts[one]]) + (n - 1)
            if len(pos):
                _top_chars(pos, gram, freq, doc, cumlen, n, chars)
            out[("top", n)] = chars / text_len
        if n in dup_ns and len(pos):
            out[("dup", n)] = _dup_chars(pos, gram, doc, cumlen, n, n_docs) / text_len
        again = freq[gram] >= 2
        pos, gram = pos[again], gram[again]
    return out


def _codes(keys: np.ndarray) -> np.ndarray:
    """Dense ids 0..K-1 numbered in order of first appearance (hash-based, O(N))."""
    return pd.factorize(keys, sort=False)[0].astype(np.int64)


def _top_chars(pos, gram, freq, doc, cumlen, n, chars) -> None:
    """Where a text has a repeated n-gram: count x characters of its most frequent one."""
    per_pos = freq[gram]
    owner = doc[pos]
    docs, first = np.unique(owner, return_index=True)  # pos is sorted, so owner is too
    best = np.maximum.reduceat(per_pos, first)
    best_here = np.repeat(best, np.diff(np.append(first, len(pos))))
    at_best = np.flatnonzero(per_pos == best_here)
    _, first_best = np.unique(owner[at_best], return_index=True)
    p = pos[at_best[first_best]]
    repeated = best >= 2
    chars[docs[repeated]] = (best * (cumlen[p + n] - cumlen[p] + (n - 1)))[repeated]


def _dup_chars(pos, gram, doc, cumlen, n, n_docs) -> np.ndarray:
    """Characters in repeated n-grams, overlapping repeats counted once (greedy skip)."""
    chars = np.zeros(n_docs)
    # codes are numbered by first appearance: a code's first position is where it exceeds
    # every earlier code
    first = np.flatnonzero(gram > np.maximum.accumulate(np.append(-1, gram[:-1])))
    first_at = first[gram]  # index (into pos) of each n-gram's first occurrence
    rep = np.flatnonzero(first_at != np.arange(len(pos)))
    if len(rep) == 0:
        return chars
    p_rep = pos[rep]
    rows = zip(doc[p_rep].tolist(), p_rep.tolist(), gram[rep].tolist(),
               pos[first_at[rep]].tolist(), (cumlen[p_rep + n] - cumlen[p_rep]).tolist(),
               strict=True)
    cur = -1
    total = 0
    skip_until = 0
    hits: list[int] = []
    seen: set[int] = set()
    for d, p, g, f, length in rows:
        if d != cur:
            if cur >= 0:
                chars[cur] = total
            cur, total, skip_until, hits, seen = d, 0, 0, [], set()
        if p < skip_until:
            continue  # inside the n words skipped after the previous repeat
        # The first occurrence was visited unless it fell in a skipped window.
        k = bisect_left(hits, f) - 1
        first_visited = k < 0 or f > hits[k] + n - 1
        if g in seen or first_visited:
            total += length
            skip_until = p + n
            hits.append(p)
        else:
            seen.add(g)
    chars[cur] = total
    return chars
