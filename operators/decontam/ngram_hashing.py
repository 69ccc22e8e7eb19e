"""Word n-grams of texts as uint64 hashes, vectorised over a whole batch.

Normalisation [GPT-3 App. C; algorithms.md 3.1]: punctuation stripped and text split into
words, lower-cased. A word is a maximal run of letters and digits (`\\p{L}`, `\\p{N}`);
everything else (punctuation, `_`, whitespace) separates words, so case, spacing, tabs
and line breaks never change the words, and `<<750*10=7500>>` reads `750 10 7500`.

Hashing: each distinct word of a batch is hashed once with xxh3-64 (Arrow dictionary-
encodes the words); an n-gram's hash is a polynomial of its word hashes modulo 2^64,
built for every window at once with n vector steps, then mixed (splitmix64's finaliser,
with the gram's length folded in so a 5-word gram never equals a 13-word one by
construction). Windows that cross a row boundary are discarded.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import xxhash

WORD_SEPARATOR = r"[^\p{L}\p{N}]+"
_P = np.uint64(0x9E3779B97F4A7C15)       # odd multiplier of the polynomial
_LENGTH = np.uint64(0xD6E8FEB86659FD93)  # folds the gram's length into its hash


@dataclass(frozen=True)
class Words:
    """The words of a batch of texts, flattened: `hashes[i]` of word i of row `row[i]`;
    row r's words are `hashes[first[r]:first[r + 1]]`."""

    hashes: np.ndarray  # uint64
    row: np.ndarray     # int64, non-decreasing
    first: np.ndarray   # int64, len(rows) + 1

    @property
    def counts(self) -> np.ndarray:
        return np.diff(self.first)


def split_words(texts: pa.Array) -> pa.ListArray:
    """Each text's words in their original case (null text: no words)."""
    texts = pc.fill_null(texts.cast(pa.large_string()), "")
    return pc.split_pattern_regex(texts, WORD_SEPARATOR)


def words(texts: pa.Array | Iterable[str]) -> Words:
    """The normalised words of every text, hashed (see the module doc)."""
    if not isinstance(texts, pa.Array | pa.ChunkedArray):
        texts = pa.array(list(texts), pa.large_string())
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    n = len(texts)
    lists = split_words(texts)
    flat = pc.list_flatten(lists)
    parent = pc.list_parent_indices(lists).to_numpy().astype(np.int64)
    keep = pc.greater(pc.utf8_length(flat), 0)  # split leaves "" at a leading separator
    flat = pc.utf8_lower(flat.filter(keep))
    parent = parent[keep.to_numpy(zero_copy_only=False)]
    first = np.zeros(n + 1, np.int64)
    np.cumsum(np.bincount(parent, minlength=n), out=first[1:])
    return Words(word_hashes(flat), parent, first)


def word_hashes(flat: pa.Array) -> np.ndarray:
    """xxh3-64 of each word's UTF-8 bytes, hashing each distinct word once."""
    if len(flat) == 0:
        return np.empty(0, np.uint64)
    encoded = pc.dictionary_encode(flat)
    vocab = encoded.dictionary.to_pylist()
    table = np.fromiter((xxhash.xxh3_64_intdigest(w.encode()) for w in vocab), np.uint64,
                        len(vocab))
    return table[encoded.indices.to_numpy()]


def mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, elementwise on uint64 (wrapping arithmetic)."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def grams(w: Words, lengths: Iterable[int]) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """For each length k: (hash, start) of every k-word window inside one row; `start`
    is the window's first word (an index into `w.hashes`)."""
    want = sorted(set(lengths))
    out: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    h, total = w.hashes, len(w.hashes)
    acc = np.zeros(total, np.uint64)
    with np.errstate(over="ignore"):
        for k in range(1, (want[-1] if want else 0) + 1):
            if total - k + 1 <= 0:
                break
            # acc[i] = polynomial of words i..i+k-1 (wraps modulo 2^64 by design)
            acc = acc[: total - k + 1] * _P + h[k - 1:]
            if k in want:
                start = np.flatnonzero(w.row[: total - k + 1] == w.row[k - 1:])
                out[k] = (mix(acc[start] + np.uint64(k) * _LENGTH), start)
    for k in want:
        out.setdefault(k, (np.empty(0, np.uint64), np.empty(0, np.int64)))
    return out


def char_spans(text: str, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Character (start, end) of each of the `count` words of `text`, in the original text."""
    pieces = [p for p in split_words(pa.array([text])).to_pylist()[0] if p]
    starts, ends = np.zeros(count, np.int64), np.zeros(count, np.int64)
    at = 0
    for i, piece in enumerate(pieces[:count]):
        at = text.find(piece, at)
        starts[i], ends[i] = at, at + len(piece)
        at += len(piece)
    return starts, ends
