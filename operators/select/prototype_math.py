"""The maths of D4's pruning step (Tirumala et al. 2023, algorithms.md section 2.2, step 3:
SSL-Prototypes of Sorscher et al. 2022), over numpy only.

`kept_per_cluster` splits a keep fraction into whole rows per cluster (the same fraction in
every cluster, the total exact to half a row); `prototype_ranks` orders one cluster's rows
from the most prototypical (nearest its centroid) to the least.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

# Denominator bound of the rational a keep fraction is read as: 0.8 is exactly 4/5, and
# n * numerator stays far inside int64 for any cluster size (n < 2**40).
_MAX_DENOMINATOR = 1 << 20


def kept_per_cluster(sizes: np.ndarray, fraction: float) -> np.ndarray:
    """Rows to keep in each cluster of `sizes` rows, for a keep fraction f.

    Paper [D4 section 3, step 3]: "the same fraction per cluster until the total equals
    R". Each cluster's quota f * n_c is rarely whole, and rounding each one alone would
    leave the total off by up to K/2 rows (a lot when clusters are small), so this is the
    largest-remainder method: every cluster keeps floor(f * n_c), and the round(f * N) -
    sum(floor) rows still owed go one each to the clusters with the largest fractional
    parts (ties: the lower cluster index). Hence each cluster keeps floor or ceil of its
    quota (|kept_c - f * n_c| < 1) and the total is round(f * N), within half a row.
    Integer arithmetic on f as a rational, so no float rounding decides a row.
    """
    sizes = np.asarray(sizes, np.int64)
    if len(sizes) == 0:
        return np.zeros(0, np.int64)
    ratio = Fraction(fraction).limit_denominator(_MAX_DENOMINATOR)
    num, den = ratio.numerator, ratio.denominator
    scaled = sizes * num
    kept, remainder = scaled // den, scaled % den
    target = (2 * int(sizes.sum()) * num + den) // (2 * den)  # round(f * N), half up
    owed = target - int(kept.sum())  # 0 <= owed <= clusters with a remainder
    winners = np.lexsort((np.arange(len(sizes)), -remainder))[:owed]
    kept[winners] += 1
    return kept


def prototype_ranks(cosine: np.ndarray, order: np.ndarray) -> np.ndarray:
    """1-based rank of each row of one cluster by cosine to its centroid, descending: rank 1
    is the most prototypical row, the first one D4 drops. Ties go to the earlier input
    row (`order`), so the rank does not depend on how rows reached the call."""
    by_rank = np.lexsort((order, -np.asarray(cosine, np.float64)))
    ranks = np.empty(len(by_rank), np.int64)
    ranks[by_rank] = np.arange(1, len(by_rank) + 1)
    return ranks
