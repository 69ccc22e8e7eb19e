"""A Bloom filter of benchmark n-grams, for benchmark sets too large for the exact index.

Data Portraits (Marone and Van Durme 2023; algorithms.md 3.4) store benchmark n-grams in
a Bloom filter and query a text by sliding its windows over it, reporting runs
("chains") of consecutive hits. Here the grams are the same word n-grams (and template
filter) as the exact index; each is salted with its benchmark, so a hit says which
benchmark, but not which item, the gram came from.

Sizing [Bloom 1970; Data Portraits 3.4]: for N stored grams and error rate p,
m = ceil(-N ln p / (ln 2)^2) bits and k = round(m / N * ln 2) hash functions; the
false-positive rate for the N grams actually stored is (1 - e^(-kN/m))^k, reported next
to the configured p. Positions use double hashing (Kirsch and Mitzenmacher 2006):
g_i = h1 + i * h2 mod m, with h1 the gram's 64-bit hash and h2 a second mix of it
(forced odd), all vectorised in numpy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from operators.decontam.ngram_hashing import mix

_SALT = np.uint64(0xA0761D6478BD642F)
_SECOND = np.uint64(0xE7037ED1A0B428DB)


def salted(grams: np.ndarray, benchmark: int) -> np.ndarray:
    """A gram's key in the filter for one benchmark (index into the filter's names)."""
    with np.errstate(over="ignore"):
        return mix(grams ^ (np.uint64(benchmark + 1) * _SALT))


@dataclass(frozen=True)
class BloomFilter:
    """m bits, k hash functions, `stored` keys inserted."""

    bits: np.ndarray  # uint8, ceil(m / 8) bytes
    m: int
    k: int
    stored: int
    error_rate: float  # the configured p

    @classmethod
    def sized(cls, stored: int, error_rate: float) -> BloomFilter:
        """An empty filter sized for `stored` keys at `error_rate`."""
        n = max(stored, 1)
        m = max(64, math.ceil(-n * math.log(error_rate) / math.log(2) ** 2))
        k = max(1, round(m / n * math.log(2)))
        return cls(np.zeros((m + 7) // 8, np.uint8), m, k, stored, error_rate)

    @property
    def nbytes(self) -> int:
        return int(self.bits.nbytes)

    @property
    def computed_error_rate(self) -> float:
        """(1 - e^(-kN/m))^k for the N keys stored."""
        return (1.0 - math.exp(-self.k * self.stored / self.m)) ** self.k

    def _positions(self, keys: np.ndarray) -> np.ndarray:
        """(len(keys), k) bit positions by double hashing."""
        with np.errstate(over="ignore"):
            h1 = keys
            h2 = mix(keys ^ _SECOND) | np.uint64(1)
            i = np.arange(self.k, dtype=np.uint64)
            return (h1[:, None] + i[None, :] * h2[:, None]) % np.uint64(self.m)

    def add(self, keys: np.ndarray, chunk: int = 1 << 16) -> None:
        for lo in range(0, len(keys), chunk):
            pos = self._positions(keys[lo:lo + chunk]).ravel()
            np.bitwise_or.at(self.bits, (pos >> np.uint64(3)).astype(np.int64),
                             (np.uint8(1) << (pos & np.uint64(7)).astype(np.uint8)))

    def contains(self, keys: np.ndarray) -> np.ndarray:
        """Whether each key may be in the filter (false positives at ~ the error rate).

        Probes one hash function at a time on the keys still possible: about half the
        bits are set, so most absent keys are settled by the first one or two probes.
        """
        alive = np.arange(len(keys))
        m = np.uint64(self.m)
        with np.errstate(over="ignore"):
            h1 = keys
            h2 = mix(keys ^ _SECOND) | np.uint64(1)
            for i in range(self.k):
                if not len(alive):
                    break
                pos = (h1[alive] + np.uint64(i) * h2[alive]) % m
                byte = self.bits[(pos >> np.uint64(3)).astype(np.int64)]
                alive = alive[((byte >> (pos & np.uint64(7)).astype(np.uint8)) & 1) == 1]
        out = np.zeros(len(keys), bool)
        out[alive] = True
        return out
