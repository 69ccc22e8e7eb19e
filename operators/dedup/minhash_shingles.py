"""Tokenising and shingling for MinHash LSH (docs/algorithms.md 4.1 "Normalise" and "Shingles"):
texts in, a `Shingles` CSR batch of 64-bit shingle hashes out.

- The shingle hashes of a batch of documents are a `Shingles` CSR pair: document i owns
  `values[offsets[i]:offsets[i+1]]` (a multiset; set semantics are applied where they
  matter: the signature minimum ignores repeats, `exact_jaccard` de-duplicates).
- No Python loop runs per token or per shingle on the fast path: tokenising, hashing and
  shingling are numpy passes over the UTF-8 bytes of cache-sized blocks of documents
  (xxhash has no vectorised API, so the shingle hash is our own; see `token_hash`).
The datasketch-compatible helpers (`shingle_strings`, `sha1_hash32`, `datasketch_shingles`)
are the slow reference mode: one Python hash call per shingle.
"""

from __future__ import annotations

import hashlib
import re
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from operators.dedup.minhash_hashing import (
    LEN_MULT,
    U32,
    U64,
    fmix64_inplace,
    gram_mult,
    len_term,
)

U8 = np.uint8


# --------------------------------------------------------------------------------------
# Tokenise + shingle (algorithms.md 4.1 "Normalise" and "Shingles")


@dataclass(frozen=True)
class Shingles:
    """CSR batch of per-document shingle hashes: doc i owns values[offsets[i]:offsets[i+1]]."""

    values: np.ndarray  # uint64 (or uint32 hashes in datasketch-compatible mode)
    offsets: np.ndarray  # int64, len = n_docs + 1

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def sizes(self) -> np.ndarray:
        return np.diff(self.offsets)

    def doc(self, i: int) -> np.ndarray:
        return self.values[self.offsets[i] : self.offsets[i + 1]]

    @classmethod
    def from_arrays(cls, arrays: Sequence[np.ndarray]) -> Shingles:
        sizes = np.fromiter((len(a) for a in arrays), np.int64, len(arrays))
        values = np.concatenate([np.asarray(a, U64) for a in arrays] or [np.empty(0, U64)])
        return cls(values.astype(U64, copy=False), csr_offsets(sizes))


def csr_offsets(sizes: np.ndarray) -> np.ndarray:
    """CSR offsets of segments of `sizes`: [0, cumsum(sizes)], int64, len(sizes) + 1."""
    out = np.zeros(len(sizes) + 1, np.int64)
    np.cumsum(sizes, out=out[1:])
    return out


def _ranges(starts: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Concatenation of arange(starts[i], starts[i] + sizes[i])."""
    base = np.repeat(np.asarray(starts, np.int64) - csr_offsets(sizes)[:-1], sizes)
    return base + np.arange(base.size, dtype=np.int64)


def segment_index(offsets: np.ndarray, docs: np.ndarray) -> np.ndarray:
    """Positions of all elements of CSR segments `docs` (concatenated in that order)."""
    return _ranges(offsets[docs], offsets[docs + 1] - offsets[docs])


def text_blocks(texts: Sequence[str], chars: int) -> list[tuple[int, int]]:
    """Cut the batch into runs of documents of about `chars` characters: the numpy passes
    then work on cache-sized arrays (large temporaries are several times slower here)."""
    ends = np.cumsum(np.fromiter(map(len, texts), np.int64, len(texts)))
    cuts = (
        np.unique(np.searchsorted(ends, np.arange(chars, ends[-1], chars)) + 1) if len(ends) else []
    )
    bounds = [0, *[int(c) for c in cuts if 0 < c < len(texts)], len(texts)]
    return list(zip(bounds[:-1], bounds[1:], strict=True))


def tokenize(text: str) -> list[str]:
    """Reference tokeniser (the sample ground truth): `re.findall(r"\\w+", text.lower())`."""
    return _WORD_RE.findall(text.lower())


_WORD_RE = re.compile(r"\w+")
_ASCII_WORD = np.array([chr(i).isalnum() or i == 95 for i in range(128)])


def _is_word_codepoint(cps: np.ndarray) -> np.ndarray:
    """Python `re` `\\w` for str patterns is str.isalnum() or '_': evaluated once per
    *distinct* non-ASCII code point (ASCII through a table)."""
    out = _ASCII_WORD[np.minimum(cps, 127)]
    hi = np.flatnonzero(cps >= 128)
    if hi.size:
        uniq, inv = np.unique(cps[hi], return_inverse=True)
        ok = np.fromiter((chr(c).isalnum() for c in uniq.tolist()), bool, len(uniq))
        out[hi] = ok[inv]
    return out


def _word_bytes(u8: np.ndarray) -> np.ndarray:
    """Mask of the UTF-8 bytes that belong to `\\w` characters (text already lower-case)."""
    word = (u8 - U8(48)) < 10  # '0'..'9' (uint8 wrap-around)
    word |= (u8 - U8(97)) < 26  # 'a'..'z'
    word |= u8 == 95  # '_'
    lead = np.flatnonzero(u8 >= 0xC0)  # first byte of each non-ASCII character
    if lead.size:
        b = [u8[lead + k].astype(U32) for k in range(4)]  # buffer is zero-padded
        nb = 2 + (b[0] >= 0xE0) + (b[0] >= 0xF0)
        cp = np.where(
            nb == 2,
            ((b[0] & 0x1F) << 6) | (b[1] & 0x3F),
            np.where(
                nb == 3,
                ((b[0] & 0x0F) << 12) | ((b[1] & 0x3F) << 6) | (b[2] & 0x3F),
                ((b[0] & 0x07) << 18)
                | ((b[1] & 0x3F) << 12)
                | ((b[2] & 0x3F) << 6)
                | (b[3] & 0x3F),
            ),
        )
        word[_ranges(lead, nb)] = np.repeat(_is_word_codepoint(cp), nb)
    return word


def _encode(texts: Sequence[str], encoding: str) -> tuple[bytes, np.ndarray]:
    """Lower-case, encode and join with '\\n' (not a word char, so no token spans two
    documents); returns the bytes (zero-padded by 32) and each document's start, in
    code units (bytes for UTF-8, code points for UTF-32)."""
    enc = [t.lower().encode(encoding, "surrogatepass") for t in texts]  # per-document Python
    sep = "\n".encode(encoding)
    lens = np.fromiter(map(len, enc), np.int64, len(enc))
    return sep.join(enc) + b"\0" * 32, csr_offsets(lens + len(sep))[:-1] // len(sep)


def _word_token_hashes(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """`token_hash` of every token of `tokenize(text)` for a block of texts, vectorised
    over UTF-8 bytes; returns (token hashes, per-document token offsets)."""
    data, doc_start = _encode(texts, "utf-8")
    u8 = np.frombuffer(data, U8)
    word = _word_bytes(u8)
    first = word.copy()
    first[1:] &= ~word[:-1]
    last = word.copy()
    last[:-1] &= ~word[1:]
    starts = np.flatnonzero(first)
    nbytes = np.flatnonzero(last) + 1 - starts
    tok_off = np.append(np.searchsorted(starts, doc_start), starts.size)
    # Unaligned little-endian uint64 view at every byte offset: one gather per 8 bytes.
    at = np.lib.stride_tricks.as_strided(u8[:8].view("<u8"), (u8.size - 7,), (1,))

    def chunk(pos: np.ndarray, left: np.ndarray) -> np.ndarray:
        keep = U64(64) - U64(8) * np.minimum(left, 8).astype(U64)
        return at[pos] & (~U64(0) >> keep)

    h = chunk(starts, nbytes)
    sel, k = np.flatnonzero(nbytes > 8), 1
    while sel.size:  # tokens longer than 8 bytes: one more pass per 8 bytes
        h[sel] = fmix64_inplace(h[sel]) ^ chunk(starts[sel] + 8 * k, nbytes[sel] - 8 * k)
        k += 1
        sel = sel[nbytes[sel] > 8 * k]
    h += nbytes.astype(U64) * LEN_MULT
    return fmix64_inplace(h), tok_off


def _char_stream(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Code points of each text's tokens joined by single spaces, and per-doc offsets."""
    data, doc_start = _encode(texts, "utf-32-le")
    cp = np.frombuffer(data, U32)
    idx = np.flatnonzero(_is_word_codepoint(cp))
    is_start = np.ones(idx.size, bool)
    is_start[1:] = idx[1:] != idx[:-1] + 1
    starts = np.flatnonzero(is_start)
    tok_off = np.append(np.searchsorted(idx[starts], doc_start), starts.size)
    # Word char i of global token t lands at i + t - (non-empty docs before its doc):
    # a space before every token except each document's first.
    ntok = np.diff(tok_off)
    tok_id = np.cumsum(is_start) - 1
    doc_of_tok = np.repeat(np.arange(len(ntok)), ntok)
    out_pos = np.arange(idx.size) + tok_id - csr_offsets(ntok > 0)[:-1][doc_of_tok[tok_id]]
    ends = np.append(starts, idx.size)  # word chars before token t: ends[t]
    chars = ends[tok_off[1:]] - ends[tok_off[:-1]] + np.maximum(ntok - 1, 0)
    stream = np.full(int(chars.sum()), 32, U64)
    stream[out_pos] = cp[idx]
    return stream, csr_offsets(chars)


def _ngrams(values: np.ndarray, off: np.ndarray, n: int) -> np.ndarray:
    """`gram_hash` of every window of n consecutive `values` inside each document.

    A document with 0 < L < n elements gets one shingle of all L elements (text-dedup's
    rule, algorithms.md 4.1); an empty document gets none. Returns the concatenated
    hashes (document-major); counts per document follow from the sizes.
    """
    size = np.diff(off)
    per_doc = np.where(size >= n, size - n + 1, np.minimum(size, 1))
    sh_off = csr_offsets(per_doc)
    out = np.empty(int(sh_off[-1]), U64)
    mult = gram_mult(n)
    m = values.size - n + 1
    full = np.flatnonzero(size >= n)
    if m > 0 and full.size:
        # Rolling combine over the whole concatenation (contiguous slices, no gathers),
        # then keep the windows that lie inside one document.
        acc = np.full(m, len_term(n))
        tmp = np.empty(m, U64)
        for k in range(n):
            np.multiply(values[k : k + m], mult[k], out=tmp)
            acc += tmp
        out[_ranges(sh_off[full], per_doc[full])] = acc[_ranges(off[full], per_doc[full])]
    short = np.flatnonzero((size > 0) & (size < n))
    if short.size:
        k_len = size[short]
        acc = k_len.astype(U64) * LEN_MULT
        for k in range(n - 1):
            part = np.where(k < k_len, values[np.minimum(off[short] + k, values.size - 1)], 0)
            acc += part * mult[k]
        out[sh_off[short]] = acc
    return fmix64_inplace(out)


def shingle_hashes(
    texts: Sequence[str],
    ngram: int = 5,
    unit: Literal["word", "char"] = "word",
    *,
    block_chars: int = 1 << 18,
) -> Shingles:
    """64-bit shingle hashes of a batch of texts (algorithms.md 4.1; multisets, in order).

    Tokens are exactly `tokenize(text)` = `re.findall(r"\\w+", text.lower())`.
    - unit="word": word n-grams; hash = gram_hash(token_hash of each token).
    - unit="char": character n-grams of the tokens joined by single spaces (punctuation
      and whitespace runs normalised away); hash = gram_hash(code points).
    Fewer than `ngram` units -> one shingle of all of them; no tokens -> no shingles.
    Python runs per document and per block of documents, never per token or shingle.
    """
    if ngram < 1:
        raise ValueError("ngram must be >= 1")
    if unit not in ("word", "char"):
        raise ValueError(f"unit must be 'word' or 'char', got {unit!r}")
    parts = [
        block_shingles(texts[lo:hi], ngram, unit)
        for lo, hi in text_blocks(texts, block_chars)
    ]
    if not parts:
        return Shingles(np.empty(0, U64), np.zeros(1, np.int64))
    sizes = np.concatenate([p.sizes for p in parts])
    return Shingles(np.concatenate([p.values for p in parts]), csr_offsets(sizes))


def block_shingles(texts: Sequence[str], ngram: int, unit: str) -> Shingles:
    """`shingle_hashes` of one block of texts (arguments unchecked; see `text_blocks`)."""
    units, off = (_word_token_hashes if unit == "word" else _char_stream)(texts)
    per = np.diff(off)
    sizes = np.where(per >= ngram, per - ngram + 1, np.minimum(per, 1))
    return Shingles(_ngrams(units, off, ngram), csr_offsets(sizes))


def shingle_strings(tokens: Sequence[str], ngram: int = 5) -> list[str]:
    """Word n-grams as space-joined strings (reference / datasketch-compatible mode)."""
    if len(tokens) < ngram:
        return [" ".join(tokens)] if tokens else []
    return [" ".join(tokens[i : i + ngram]) for i in range(len(tokens) - ngram + 1)]


def sha1_hash32(data: bytes) -> int:
    """datasketch's default `hashfunc` (first 4 bytes of SHA-1, little-endian)."""
    return struct.unpack("<I", hashlib.sha1(data).digest()[:4])[0]


def datasketch_shingles(
    texts: Sequence[str], ngram: int = 5, hashfunc: Callable[[bytes], int] = sha1_hash32
) -> Shingles:
    """datasketch-compatible mode (slow: one Python hash call per shingle).

    Shingle = UTF-8 of the space-joined word n-gram, hashed with datasketch's hashfunc;
    `signatures()` of the result equals datasketch `MinHash(num_perm, seed)` updated with
    the same byte strings. The fast path (`shingle_hashes`) differs only in the shingle
    hash: a vectorised 64-bit hash of the token sequence, truncated to its low 32 bits,
    instead of sha1_hash32 of the joined bytes; the permutations are identical.
    """
    arrays = [
        np.fromiter((hashfunc(s.encode()) for s in shingle_strings(tokenize(t), ngram)), U64)
        for t in texts
    ]
    return Shingles.from_arrays(arrays)
