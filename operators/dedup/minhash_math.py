"""Pure maths of MinHash LSH near-duplicate detection (docs/algorithms.md section 4).

No Ray, no Arrow tables: numpy arrays in, numpy arrays out. A near-duplicate pass is

    shingle_hashes -> signatures -> band_keys -> bucket_edges -> verify_edges
    -> connected_components -> choose_keepers

(`find_near_duplicates` composes them for one in-memory batch). References:
- MinHash / resemblance: Broder 1997, "On the resemblance and containment of documents".
- Banding and the S-curve P(s) = 1 - (1 - s^r)^b: Leskovec, Rajaraman, Ullman, *Mining of
  Massive Datasets* (MMDS) ch. 3.4.

Conventions
- The shingle hashes of a batch of documents are a `Shingles` CSR pair: document i owns
  `values[offsets[i]:offsets[i+1]]` (a multiset; set semantics are applied where they
  matter: the signature minimum ignores repeats, `exact_jaccard` de-duplicates).
- "rows" are caller-chosen int64 keys (the operator uses `_order`). Every tie-break is on
  them, so results never depend on batch order or scheduling.
- No Python loop runs per token or per shingle on the fast path: tokenising, hashing and
  shingling are numpy passes over the UTF-8 bytes of cache-sized blocks of documents
  (xxhash has no vectorised API, so the shingle hash is our own; see `token_hash`).
"""

from __future__ import annotations

import functools
import hashlib
import re
import struct
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

import numpy as np

U64 = np.uint64
U32 = np.uint32
U8 = np.uint8
EMPTY = np.uint32(0xFFFFFFFF)  # signature value of an empty set (datasketch's max hash)
_MASK32 = U64(0xFFFFFFFF)


# --------------------------------------------------------------------------------------
# Hash primitives (fixed, seed-free: a shingle's hash depends only on its tokens)


def fmix64(x: np.ndarray) -> np.ndarray:
    """MurmurHash3 64-bit finaliser, an avalanching bijection on uint64 (returns a copy)."""
    x = np.array(x, dtype=U64, copy=True)
    x ^= x >> U64(33)
    x *= U64(0xFF51AFD7ED558CCD)
    x ^= x >> U64(33)
    x *= U64(0xC4CEB9FE1A85EC53)
    x ^= x >> U64(33)
    return x


def fmix32(x: np.ndarray) -> np.ndarray:
    """MurmurHash3 32-bit finaliser, exactly as datasketch 2.0 `_fmix(hv, 32)`."""
    x = np.array(x, dtype=U32, copy=True)
    x ^= x >> U32(16)
    x *= U32(0x85EBCA6B)
    x ^= x >> U32(13)
    x *= U32(0xC2B2AE35)
    x ^= x >> U32(16)
    return x


def _splitmix64(i: np.ndarray) -> np.ndarray:
    z = np.asarray(i, dtype=U64) * U64(0x9E3779B97F4A7C15) + U64(0x632BE59BD9B4E019)
    z = (z ^ (z >> U64(30))) * U64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> U64(27))) * U64(0x94D049BB133111EB)
    return z ^ (z >> U64(31))


# Fixed odd multipliers: _gram_mult(n)[k] weighs the k-th element of an n-gram. Independent
# random weights (not powers of one base) avoid the Thue-Morse collisions of polynomial
# hashing mod 2^64; every summed element is itself a full-entropy hash or a small code
# point, so the linear combine is not weak in its high bits.
_LEN_MULT = U64(0xD6E8FEB86659FD93)


def _len_term(n: int) -> np.uint64:
    return U64((n * int(_LEN_MULT)) & 0xFFFFFFFFFFFFFFFF)


@functools.lru_cache(maxsize=64)
def _gram_mult(n: int) -> np.ndarray:
    mult = _splitmix64(np.arange((1 << 40), (1 << 40) + n)) | U64(1)
    mult.flags.writeable = False
    return mult


def _fmix64_inplace(x: np.ndarray) -> np.ndarray:
    x ^= x >> U64(33)
    x *= U64(0xFF51AFD7ED558CCD)
    x ^= x >> U64(33)
    x *= U64(0xC4CEB9FE1A85EC53)
    x ^= x >> U64(33)
    return x


def token_hash(token: str) -> int:
    """Reference (slow, one token) of the vectorised word-token hash.

    UTF-8 bytes cut into 8-byte little-endian chunks c_0..c_m (last zero-padded);
    h = c_0, then h = fmix64(h) ^ c_k for each later chunk; result fmix64(h + nbytes*L).
    """
    raw = token.encode("utf-8", "surrogatepass")
    chunks = np.frombuffer(raw + b"\0" * (-len(raw) % 8), "<u8").astype(U64)
    h = chunks[:1].copy()
    for c in chunks[1:]:
        h = fmix64(h) ^ c
    return int(_fmix64_inplace(h + _len_term(len(raw)))[0])


def gram_hash(parts: Sequence[int]) -> int:
    """Reference of the n-gram combine: fmix64(sum_k part_k * G_k + count * L) mod 2^64."""
    v = np.array(parts, dtype=U64)
    acc = np.sum(v * _gram_mult(len(v)), dtype=U64, keepdims=True) + _len_term(len(v))
    return int(_fmix64_inplace(acc)[0])


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
        return cls(values.astype(U64, copy=False), _offsets(sizes))


def _offsets(sizes: np.ndarray) -> np.ndarray:
    out = np.zeros(len(sizes) + 1, np.int64)
    np.cumsum(sizes, out=out[1:])
    return out


def _ranges(starts: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Concatenation of arange(starts[i], starts[i] + sizes[i])."""
    base = np.repeat(np.asarray(starts, np.int64) - _offsets(sizes)[:-1], sizes)
    return base + np.arange(base.size, dtype=np.int64)


def _segment_index(offsets: np.ndarray, docs: np.ndarray) -> np.ndarray:
    """Positions of all elements of CSR segments `docs` (concatenated in that order)."""
    return _ranges(offsets[docs], offsets[docs + 1] - offsets[docs])


def _blocks(texts: Sequence[str], chars: int) -> list[tuple[int, int]]:
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
    return sep.join(enc) + b"\0" * 32, _offsets(lens + len(sep))[:-1] // len(sep)


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
        h[sel] = _fmix64_inplace(h[sel]) ^ chunk(starts[sel] + 8 * k, nbytes[sel] - 8 * k)
        k += 1
        sel = sel[nbytes[sel] > 8 * k]
    h += nbytes.astype(U64) * _LEN_MULT
    return _fmix64_inplace(h), tok_off


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
    out_pos = np.arange(idx.size) + tok_id - _offsets(ntok > 0)[:-1][doc_of_tok[tok_id]]
    ends = np.append(starts, idx.size)  # word chars before token t: ends[t]
    chars = ends[tok_off[1:]] - ends[tok_off[:-1]] + np.maximum(ntok - 1, 0)
    stream = np.full(int(chars.sum()), 32, U64)
    stream[out_pos] = cp[idx]
    return stream, _offsets(chars)


def _ngrams(values: np.ndarray, off: np.ndarray, n: int) -> np.ndarray:
    """`gram_hash` of every window of n consecutive `values` inside each document.

    A document with 0 < L < n elements gets one shingle of all L elements (text-dedup's
    rule, algorithms.md 4.1); an empty document gets none. Returns the concatenated
    hashes (document-major); counts per document follow from the sizes.
    """
    size = np.diff(off)
    per_doc = np.where(size >= n, size - n + 1, np.minimum(size, 1))
    sh_off = _offsets(per_doc)
    out = np.empty(int(sh_off[-1]), U64)
    mult = _gram_mult(n)
    m = values.size - n + 1
    full = np.flatnonzero(size >= n)
    if m > 0 and full.size:
        # Rolling combine over the whole concatenation (contiguous slices, no gathers),
        # then keep the windows that lie inside one document.
        acc = np.full(m, _len_term(n))
        tmp = np.empty(m, U64)
        for k in range(n):
            np.multiply(values[k : k + m], mult[k], out=tmp)
            acc += tmp
        out[_ranges(sh_off[full], per_doc[full])] = acc[_ranges(off[full], per_doc[full])]
    short = np.flatnonzero((size > 0) & (size < n))
    if short.size:
        k_len = size[short]
        acc = k_len.astype(U64) * _LEN_MULT
        for k in range(n - 1):
            part = np.where(k < k_len, values[np.minimum(off[short] + k, values.size - 1)], 0)
            acc += part * mult[k]
        out[sh_off[short]] = acc
    return _fmix64_inplace(out)


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
    parts = [_block_shingles(texts[lo:hi], ngram, unit) for lo, hi in _blocks(texts, block_chars)]
    if not parts:
        return Shingles(np.empty(0, U64), np.zeros(1, np.int64))
    sizes = np.concatenate([p.sizes for p in parts])
    return Shingles(np.concatenate([p.values for p in parts]), _offsets(sizes))


def _block_shingles(texts: Sequence[str], ngram: int, unit: str) -> Shingles:
    units, off = (_word_token_hashes if unit == "word" else _char_stream)(texts)
    per = np.diff(off)
    sizes = np.where(per >= ngram, per - ngram + 1, np.minimum(per, 1))
    return Shingles(_ngrams(units, off, ngram), _offsets(sizes))


def text_signatures(
    texts: Sequence[str],
    num_perm: int = 128,
    seed: int = 1,
    ngram: int = 5,
    unit: Literal["word", "char"] = "word",
    *,
    block_chars: int = 1 << 18,
) -> np.ndarray:
    """`signatures(shingle_hashes(texts, ngram, unit), num_perm, seed)`, fused per block
    of documents so the shingle hashes never leave the cache (the fast path)."""
    if ngram < 1:
        raise ValueError("ngram must be >= 1")
    if unit not in ("word", "char"):
        raise ValueError(f"unit must be 'word' or 'char', got {unit!r}")
    out = np.empty((len(texts), num_perm), U32)
    for lo, hi in _blocks(texts, block_chars):
        out[lo:hi] = signatures(_block_shingles(texts[lo:hi], ngram, unit), num_perm, seed)
    return out


# --------------------------------------------------------------------------------------
# Signatures (Broder 1997; datasketch 2.0 "affine32" permutation scheme)


@functools.lru_cache(maxsize=16)
def permutations(num_perm: int = 128, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """The (a, b) of datasketch 2.0 `MinHash(num_perm, seed, scheme="affine32")`:
    h -> a*h + b mod 2^32 with a odd (a bijection), drawn from RandomState(seed).
    Cached (seeding RandomState costs ~0.5 ms); the arrays are read-only."""
    gen = np.random.RandomState(seed)
    a = gen.randint(0, 1 << 31, num_perm, dtype=U32) * U32(2) + U32(1)
    b = gen.randint(0, 1 << 32, num_perm, dtype=U32)
    a.flags.writeable = b.flags.writeable = False
    return a, b


def signatures(
    shingles: Shingles | Sequence[np.ndarray],
    num_perm: int = 128,
    seed: int = 1,
    *,
    chunk_shingles: int = 8192,
    chunk_perms: int = 16,
) -> np.ndarray:
    """MinHash signatures, uint32 [n_docs, num_perm] (algorithms.md 4.1 "Signature").

    sig[d, k] = min over shingles x of d of (a_k * fmix32(x mod 2^32) + b_k) mod 2^32, the
    datasketch 2.0 affine32 scheme: with 32-bit hashes from datasketch's `hashfunc`
    (see `datasketch_shingles`) the result equals `MinHash(num_perm, seed).hashvalues`.
    An empty document gets all 0xFFFFFFFF (datasketch's empty value). Work is chunked to
    ~chunk_shingles x chunk_perms uint32 (512 KiB by default: cache-sized, which measured
    1.5-2x faster here than 2-8 MiB blocks) per pass.
    """
    if not isinstance(shingles, Shingles):
        shingles = Shingles.from_arrays(shingles)
    a, b = permutations(num_perm, seed)
    values, off = shingles.values, shingles.offsets
    n = len(off) - 1
    out = np.full((n, num_perm), EMPTY, U32)
    docs = np.flatnonzero(np.diff(off) > 0)  # reduceat needs non-empty segments
    # Cut the non-empty docs into groups of about chunk_shingles shingles.
    cuts = np.searchsorted(off[docs], np.arange(0, off[-1], chunk_shingles), side="right") - 1
    cuts = np.unique(np.append(np.maximum(cuts, 0), len(docs)))
    budget = chunk_perms * max(chunk_shingles, 1)
    buf = np.empty(budget, U32)
    for g0, g1 in zip(cuts[:-1], cuts[1:], strict=True):
        if g0 == g1:
            continue
        d = docs[g0:g1]
        s0, s1 = off[d[0]], off[d[-1] + 1]
        hh = fmix32((values[s0:s1].astype(U64, copy=False) & _MASK32).astype(U32))
        seg = off[d] - s0
        m = s1 - s0
        step = max(1, min(chunk_perms, budget // m))  # a long document: fewer perms a pass
        block = buf if budget >= m else np.empty(m, U32)
        for p0 in range(0, num_perm, step):
            p1 = min(p0 + step, num_perm)
            view = block[: (p1 - p0) * m].reshape(p1 - p0, m)
            np.multiply(a[p0:p1, None], hh[None, :], out=view)  # permutation-major layout:
            np.add(view, b[p0:p1, None], out=view)  # contiguous rows, cache-sized
            out[d, p0:p1] = np.minimum.reduceat(view, seg, axis=1).T
    return out


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


# --------------------------------------------------------------------------------------
# Banding (MMDS ch. 3.4; algorithms.md 4.1 "Banding", 4.2)


def candidate_probability(s: np.ndarray | float, bands: int, rows: int) -> np.ndarray:
    """The S-curve P(s) = 1 - (1 - s^r)^b: chance a pair of Jaccard s shares a bucket."""
    return 1.0 - (1.0 - np.asarray(s, float) ** rows) ** bands


def _all_band_shapes(num_perm: int) -> tuple[np.ndarray, np.ndarray]:
    r = np.concatenate([np.full(num_perm // r, r) for r in range(1, num_perm + 1)])
    b = np.concatenate([np.arange(1, num_perm // r + 1) for r in range(1, num_perm + 1)])
    return b, r


def _areas(threshold: float, b: np.ndarray, r: np.ndarray, grid: int = 2001):
    """FP = integral_0^t P(s) ds and FN = integral_t^1 (1 - P(s)) ds (trapezoid rule)."""
    lo = np.linspace(0.0, threshold, grid)
    hi = np.linspace(threshold, 1.0, grid)
    fp = np.trapezoid(1 - (1 - lo[None, :] ** r[:, None]) ** b[:, None], lo, axis=1)
    fn = np.trapezoid((1 - hi[None, :] ** r[:, None]) ** b[:, None], hi, axis=1)
    return fp, fn


@functools.lru_cache(maxsize=64)  # pure; the operator asks once per batch
def choose_bands(
    threshold: float,
    num_perm: int = 128,
    *,
    min_recall: float = 0.99,
    bands: int | None = None,
    rows: int | None = None,
) -> tuple[int, int]:
    """Pick (b, r), b*r <= num_perm, for candidate generation *below* the threshold.

    Rule (recall first; precision comes from verifying candidates at `threshold`):
    among all (b, r) whose S-curve gives P(threshold) >= min_recall, take the one with the
    smallest false-positive area FP = integral_0^threshold P(s) ds (the expected volume of
    sub-threshold candidates to verify); ties go to fewer bands. If no shape reaches
    min_recall, take the one with the largest P(threshold). For 0.8 / 128 this is
    (b, r) = (16, 6): P(0.8) = 0.992, s* = (1/b)^(1/r) = 0.63.
    Explicit `bands` and/or `rows` override the rule (a missing one is num_perm // other).
    """
    if not 0.0 < threshold <= 1.0:
        raise ValueError("threshold must be in (0, 1]")
    if bands is not None or rows is not None:
        b = bands if bands is not None else num_perm // rows
        r = rows if rows is not None else num_perm // bands
        if b < 1 or r < 1 or b * r > num_perm:
            raise ValueError(f"need bands*rows <= num_perm={num_perm}, got {b}x{r}")
        return int(b), int(r)
    b, r = _all_band_shapes(num_perm)
    p_t = candidate_probability(threshold, b, r)
    ok = p_t >= min_recall
    fp = np.full(b.size, np.inf)
    if ok.any():
        fp[ok] = _areas(threshold, b[ok], r[ok])[0]
    # Lexicographic: smallest FP among shapes meeting min_recall, then fewer bands.
    i = np.lexsort((b, fp)) if ok.any() else np.lexsort((b, -p_t))
    return int(b[i[0]]), int(r[i[0]])


def datasketch_bands(
    threshold: float, num_perm: int = 128, w_fp: float = 0.5, w_fn: float = 0.5
) -> tuple[int, int]:
    """datasketch `_optimal_param`: minimise w_fp*FP + w_fn*FN (algorithms.md 4.1/4.2).
    For reference; its optimum leaves P(threshold) well below 1 (0.40 at 0.8/128)."""
    b, r = _all_band_shapes(num_perm)
    fp, fn = _areas(threshold, b, r)
    i = int(np.argmin(w_fp * fp + w_fn * fn))
    return int(b[i]), int(r[i])


def band_keys(sigs: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """uint64 [n, bands]: a hash of each band's `rows` signature values, band index mixed
    in (so equal keys mean the same band matched). Uses the first bands*rows columns."""
    n, width = sigs.shape
    if bands * rows > width:
        raise ValueError(f"{bands}x{rows} bands need {bands * rows} > {width} signature values")
    v = sigs[:, : bands * rows].reshape(n, bands, rows).astype(U64)
    acc = np.broadcast_to(_splitmix64(np.arange(bands) + (1 << 41)), (n, bands)).copy()
    for k, mult in enumerate(_gram_mult(rows)):
        acc += v[:, :, k] * mult
    return fmix64(acc)


# --------------------------------------------------------------------------------------
# Candidate edges, verification, components, keepers (algorithms.md 4.1 "Optional
# verification ... connected components (union-find) and keep one document per component")


def dedupe_edges(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (a, b) edges, sorted by (a, b)."""
    if a.size == 0:
        return a, b
    o = np.lexsort((b, a))
    a, b = a[o], b[o]
    keep = np.ones(a.size, bool)
    keep[1:] = (a[1:] != a[:-1]) | (b[1:] != b[:-1])
    return a[keep], b[keep]


CLIQUE_MAX = 16


def bucket_edges(keys: np.ndarray, rows: np.ndarray,
                 clique_max: int = CLIQUE_MAX) -> tuple[np.ndarray, np.ndarray]:
    """Candidate edges from LSH buckets (rows sharing a key), vectorised over all buckets;
    output deduplicated, a < b, sorted by (a, b).

    A bucket of at most `clique_max` rows yields all its pairs; a larger one yields a star
    to its smallest row, so a huge bucket costs linear, not quadratic. Stars alone lose
    true pairs: in a bucket {X, A, B} with J(X, A) >= t > J(X, B) and J(A, B) >= t, the
    star's X-B edge fails verification and A-B is never tried (benchmarks/minhash.md,
    "bucket audit": recall 0.976-0.985 with stars only, 0.998-0.999 with all pairs, for
    15-17% more candidates). Real near-duplicate buckets are small, so the cap keeps the
    all-pairs cost bounded by clique_max x the bucket entries.

    `keys`/`rows` are flat and aligned: for band keys [n, b] pass keys.ravel() and
    np.repeat(rows, b).
    """
    keys = np.asarray(keys).ravel()
    rows = np.asarray(rows, np.int64).ravel()
    o = np.lexsort((rows, keys))
    k, r = keys[o], rows[o]
    n = k.size
    first = np.ones(n, bool)
    first[1:] = k[1:] != k[:-1]
    start = np.maximum.accumulate(np.where(first, np.arange(n), 0))
    size = np.diff(np.append(np.flatnonzero(first), n))[np.cumsum(first) - 1]
    small = size <= clique_max
    star = ~small & ~first
    a_parts, b_parts = [r[start[star]]], [r[star]]
    # Pairs (i, i + d) inside the same small bucket, for each distance d.
    idx = np.flatnonzero(small)
    end = start[idx] + size[idx]
    for d in range(1, min(clique_max, n)):
        idx, end = idx[idx + d < end], end[idx + d < end]
        if not idx.size:
            break
        a_parts.append(r[idx])
        b_parts.append(r[idx + d])
    a, b = np.concatenate(a_parts), np.concatenate(b_parts)
    keep = a != b
    return dedupe_edges(a[keep], b[keep])


def _positions(rows: np.ndarray | None, keys: np.ndarray) -> np.ndarray:
    if rows is None:
        return np.asarray(keys, np.int64)
    order = np.argsort(rows, kind="stable")
    pos = np.searchsorted(rows, keys, sorter=order)
    return order[pos]


def estimated_jaccard(sigs: np.ndarray, ia: np.ndarray, ib: np.ndarray) -> np.ndarray:
    """Fraction of equal signature positions (Broder's estimator); 0 if either is empty."""
    out = np.empty(len(ia), float)
    step = max(1, (1 << 22) // max(sigs.shape[1], 1))
    for i in range(0, len(ia), step):
        sa, sb = sigs[ia[i : i + step]], sigs[ib[i : i + step]]
        est = (sa == sb).mean(axis=1)
        empty = (sa == EMPTY).all(axis=1) | (sb == EMPTY).all(axis=1)
        out[i : i + step] = np.where(empty, 0.0, est)
    return out


_PAIR_BITS = 23  # at most 2**23 pairs per chunk of `exact_jaccard`


def _set_keys(sh: Shingles, docs: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """The shingle *sets* of `docs`, each hash cut to its top `bits` bits.

    Returns (hashes, offsets, bits): CSR in the order of `docs`, each set sorted and
    de-duplicated. Cutting hashes to `bits` (40 bits for up to 8M candidate rows, one
    fewer per doubling beyond) lets (doc or pair, hash) pack into one int64, so one
    `np.sort` does what a two-key lexsort or a global rank (an argsort: 14 s for the 75M
    shingles of 1M docs) would.
    Two different shingles of a pair then collide with probability about
    |A| |B| / 2**bits (< 1e-7 for 300-shingle documents at 40 bits), against |A| |B| / 2**64 for
    the full hashes: the Jaccard is exact but for that.
    """
    bits = 63 - max(int(len(docs)).bit_length(), _PAIR_BITS)
    sizes = sh.offsets[docs + 1] - sh.offsets[docs]
    cut = (sh.values[_segment_index(sh.offsets, docs)] >> np.uint64(64 - bits)).astype(np.int64)
    key = np.repeat(np.arange(len(docs), dtype=np.int64), sizes) << bits | cut
    key.sort()
    key = key[np.r_[True, key[1:] != key[:-1]]] if key.size else key
    owner = key >> bits
    return key & ((1 << bits) - 1), _offsets(np.bincount(owner, minlength=len(docs))), bits


def exact_jaccard(
    sh: Shingles, ia: np.ndarray, ib: np.ndarray, *, max_elements: int = 1 << 23
) -> np.ndarray:
    """Jaccard |A & B| / |A | B| of the shingle-hash *sets* of docs ia[i], ib[i].

    Vectorised: each pair's two sets are packed as (pair, hash) keys (see `_set_keys`),
    sorted together and adjacent equal keys counted; memory is bounded by chunking
    pairs to about `max_elements` values. Two empty sets score 0 (never duplicates).
    """
    ia, ib = np.asarray(ia, np.int64), np.asarray(ib, np.int64)
    out = np.zeros(ia.size, float)
    if ia.size == 0:
        return out
    docs, inv = np.unique(np.concatenate([ia, ib]), return_inverse=True)
    hashes, offsets, bits = _set_keys(sh, docs)
    ua, ub = inv[: ia.size], inv[ia.size :]
    na, nb = np.diff(offsets)[ua], np.diff(offsets)[ub]
    cum = np.cumsum(na + nb)
    lo = 0
    while lo < ia.size:
        base = cum[lo - 1] if lo else 0
        hi = max(lo + 1, int(np.searchsorted(cum, base + max_elements, "right")))
        hi = min(hi, lo + (1 << _PAIR_BITS) - 1)
        pair = np.arange(hi - lo, dtype=np.int64)
        key = np.concatenate([
            np.repeat(pair, na[lo:hi]) << bits | hashes[_segment_index(offsets, ua[lo:hi])],
            np.repeat(pair, nb[lo:hi]) << bits | hashes[_segment_index(offsets, ub[lo:hi])],
        ])
        key.sort()
        # A hash occurs at most once per set, so an equal neighbour is a shared shingle.
        shared = key[1:][key[1:] == key[:-1]] >> bits
        inter = np.bincount(shared, minlength=hi - lo)
        union = na[lo:hi] + nb[lo:hi] - inter
        out[lo:hi] = np.divide(inter, union, out=np.zeros(hi - lo), where=union > 0)
        lo = hi
    return out


def verify_edges(
    a: np.ndarray,
    b: np.ndarray,
    threshold: float,
    *,
    shingles: Shingles | None = None,
    sigs: np.ndarray | None = None,
    rows: np.ndarray | None = None,
    threads: int = 1,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Keep candidate edges whose Jaccard >= threshold; returns (a, b, jaccard) kept.

    Exact Jaccard of the shingle-hash sets when `shingles` is given (the default in the
    operator), else the signature estimate. `rows` maps row keys to positions in
    `shingles`/`sigs` (positions are the keys when it is None). Exact verification
    splits the edges into `threads` contiguous parts verified in parallel (1.7x on 2
    threads: numpy's sorts release the GIL).
    """
    ia, ib = _positions(rows, a), _positions(rows, b)
    if shingles is not None:
        parts = np.array_split(np.arange(len(ia)), max(1, min(threads, len(ia) // 1000)))
        with ThreadPoolExecutor(len(parts)) as pool:
            j = np.concatenate(list(pool.map(
                lambda p: exact_jaccard(shingles, ia[p], ib[p]), parts)) or [np.zeros(0)])
    elif sigs is not None:
        j = estimated_jaccard(sigs, ia, ib)
    else:
        raise ValueError("verify_edges needs shingles (exact) or sigs (estimate)")
    keep = j >= threshold
    return np.asarray(a)[keep], np.asarray(b)[keep], j[keep]


def connected_components(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Components of the graph on the rows appearing in edges (a, b).

    Returns (rows, component) sorted by row, component = the smallest row key of the
    component. Memory is O(distinct rows in edges), not O(corpus). Vectorised
    union-find: hook every root to the smaller root across each edge, then compress
    paths by pointer jumping; repeat until every edge is inside one tree.
    """
    nodes, inv = np.unique(np.concatenate([a, b]).astype(np.int64), return_inverse=True)
    ea, eb = inv[: len(a)], inv[len(a) :]
    parent = np.arange(nodes.size)
    while True:
        pa_, pb_ = parent[ea], parent[eb]
        diff = pa_ != pb_
        if not diff.any():
            break
        hi, lo = np.maximum(pa_[diff], pb_[diff]), np.minimum(pa_[diff], pb_[diff])
        np.minimum.at(parent, hi, lo)  # roots only hook to smaller roots: no cycles
        while True:
            grand = parent[parent]
            if np.array_equal(grand, parent):
                break
            parent = grand
        ea, eb = ea[diff], eb[diff]
    # Every child has a larger index than its parent, so a root is its tree's minimum.
    return nodes, nodes[parent]


def choose_keepers(
    rows: np.ndarray, component: np.ndarray, length: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """One keeper per component: the longest text (character count), ties -> smallest row.

    Returns (dropped, kept_by): each non-kept row and its component's keeper row.
    """
    rows, component = np.asarray(rows, np.int64), np.asarray(component, np.int64)
    o = np.lexsort((rows, -np.asarray(length, np.int64), component))
    r, c = rows[o], component[o]
    first = np.ones(r.size, bool)
    first[1:] = c[1:] != c[:-1]
    keeper = r[np.maximum.accumulate(np.where(first, np.arange(r.size), 0))]
    return r[~first], keeper[~first]


# --------------------------------------------------------------------------------------
# Composition for one in-memory batch


def find_near_duplicates(
    texts: Sequence[str],
    rows: np.ndarray | None = None,
    *,
    threshold: float = 0.8,
    num_perm: int = 128,
    seed: int = 1,
    ngram: int = 5,
    unit: Literal["word", "char"] = "word",
    bands: int | None = None,
    band_rows: int | None = None,
    verify: Literal["exact", "estimate", "none"] = "exact",
    clique_max: int = CLIQUE_MAX,
) -> tuple[np.ndarray, np.ndarray]:
    """All steps on one batch; returns (dropped rows, their keeper rows).

    verify: "exact" keeps candidate edges with exact shingle-set Jaccard >= threshold,
    "estimate" uses the signature estimate instead, "none" keeps every LSH candidate.
    """
    rows = np.arange(len(texts), dtype=np.int64) if rows is None else np.asarray(rows, np.int64)
    sigs = text_signatures(texts, num_perm, seed, ngram, unit)
    b, r = choose_bands(threshold, num_perm, bands=bands, rows=band_rows)
    keys = band_keys(sigs, b, r)
    a, c = bucket_edges(keys.ravel(), np.repeat(rows, b), clique_max)
    if verify == "exact":  # shingle sets are rebuilt for the candidates only
        cand = np.unique(_positions(rows, np.concatenate([a, c])))
        sh = shingle_hashes([texts[i] for i in cand.tolist()], ngram, unit)
        a, c, _ = verify_edges(a, c, threshold, shingles=sh, rows=rows[cand])
    elif verify == "estimate":
        a, c, _ = verify_edges(a, c, threshold, sigs=sigs, rows=rows)
    nodes, comp = connected_components(a, c)
    length = np.fromiter(map(len, texts), np.int64, len(texts))[_positions(rows, nodes)]
    return choose_keepers(nodes, comp, length)
