"""Hash primitives of MinHash LSH (docs/algorithms.md section 4): fixed and seed-free, so a
shingle's hash depends only on its tokens.

The MurmurHash3 finalisers, splitmix64, the word-token hash and the n-gram combine, each
with a slow one-value reference (`token_hash`, `gram_hash`) of what the vectorised shingling
in `minhash_shingles` computes (xxhash has no vectorised API, so the shingle hash is our own).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

U64 = np.uint64
U32 = np.uint32


# --------------------------------------------------------------------------------------
# Hash primitives (fixed, seed-free: a shingle's hash depends only on its tokens)


def fmix64_inplace(x: np.ndarray) -> np.ndarray:
    """MurmurHash3 64-bit finaliser, an avalanching bijection on uint64, applied to the
    uint64 array `x` in place (returns it)."""
    x ^= x >> U64(33)
    x *= U64(0xFF51AFD7ED558CCD)
    x ^= x >> U64(33)
    x *= U64(0xC4CEB9FE1A85EC53)
    x ^= x >> U64(33)
    return x


def fmix64(x: np.ndarray) -> np.ndarray:
    """MurmurHash3 64-bit finaliser, an avalanching bijection on uint64 (returns a copy)."""
    return fmix64_inplace(np.array(x, dtype=U64, copy=True))


def fmix32(x: np.ndarray) -> np.ndarray:
    """MurmurHash3 32-bit finaliser, exactly as datasketch 2.0 `_fmix(hv, 32)`."""
    x = np.array(x, dtype=U32, copy=True)
    x ^= x >> U32(16)
    x *= U32(0x85EBCA6B)
    x ^= x >> U32(13)
    x *= U32(0xC2B2AE35)
    x ^= x >> U32(16)
    return x


def splitmix64(i: np.ndarray) -> np.ndarray:
    """splitmix64 output function of each uint64 `i` (fixed multipliers, band salts)."""
    z = np.asarray(i, dtype=U64) * U64(0x9E3779B97F4A7C15) + U64(0x632BE59BD9B4E019)
    z = (z ^ (z >> U64(30))) * U64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> U64(27))) * U64(0x94D049BB133111EB)
    return z ^ (z >> U64(31))


# Fixed odd multipliers: gram_mult(n)[k] weighs the k-th element of an n-gram. Independent
# random weights (not powers of one base) avoid the Thue-Morse collisions of polynomial
# hashing mod 2^64; every summed element is itself a full-entropy hash or a small code
# point, so the linear combine is not weak in its high bits.
LEN_MULT = U64(0xD6E8FEB86659FD93)


def len_term(n: int) -> np.uint64:
    """The length term n * LEN_MULT mod 2^64 of the n-gram combine."""
    return U64((n * int(LEN_MULT)) & 0xFFFFFFFFFFFFFFFF)


@functools.lru_cache(maxsize=64)
def gram_mult(n: int) -> np.ndarray:
    """The n odd multipliers of the n-gram combine (read-only, cached)."""
    mult = splitmix64(np.arange((1 << 40), (1 << 40) + n)) | U64(1)
    mult.flags.writeable = False
    return mult


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
    return int(fmix64_inplace(h + len_term(len(raw)))[0])


def gram_hash(parts: Sequence[int]) -> int:
    """Reference of the n-gram combine: fmix64(sum_k part_k * G_k + count * L) mod 2^64."""
    v = np.array(parts, dtype=U64)
    acc = np.sum(v * gram_mult(len(v)), dtype=U64, keepdims=True) + len_term(len(v))
    return int(fmix64_inplace(acc)[0])
