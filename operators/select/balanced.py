"""select.balanced: hierarchical k-means plus balanced hierarchical sampling (Vo et al.
2024, "Automatic Data Curation for Self-Supervised Learning: A Clustering-Based
Approach", arXiv 2405.15613; algorithms.md section 2.3).

Down-samples the rows to `target_size` rows (or `target_fraction` of the rows with a
vector) so that every concept, not every row, gets a fair share: a topic that fills
half the corpus gives about as many rows as a rare one.

Stages (maths in `hierarchical_kmeans` and `balanced_sampling`):
1. `hierarchy` (fit, one process, a bounded deterministic sample of `sample` rows):
   hierarchical k-means with resampling steps [algorithms.md 2.3, paper's method
   section; faiss spherical (cosine) k-means from k-means++ seeds instead of L2, see
   `hierarchical_kmeans`].
2. `assign` (map, workers): each row's nearest level-1 centroid by cosine, that cosine,
   and its cluster at every level (signals `cluster_l1`, `cluster_l2`, ...).
3. `sizes` (emit) and `totals` (reduce by level-1 cluster): rows per level-1 cluster,
   and the cluster's first `_order` (a row to carry the cluster's quota).
4. `allocate` (resolve over K1 side records, no rows fetched): the balanced split of
   the target top-down through the levels [algorithms.md 2.3 "Balanced hierarchical
   sampling" steps 1-3]; the quota is attached to each cluster's first row; the step's
   figures (K per level, sample, target, cluster-size entropy) go in `curate.metrics`.
5. `pick` (grouped, one level-1 cluster per call): the cluster's `quota` rows closest to
   its centroid (`strategy: closest`, the reference config's default) or random
   (seeded) [step 4]; only the picked rows' `_order`s come back to the driver.
6. `decide` (map): unpicked rows are dropped as `balanced_out`, detail = their level-1
   cluster; rows without a vector as `no_embedding`.

Memory: the fit holds the sample; the resolve K1 records; a `pick` call one cluster's
`_order`, key, cosine and quota (about 32 bytes a row); the driver the picked rows'
`_order`s. Rows never move. Deterministic given `execution.seed`: the sample, the
k-means seeds, the remainder draws and the random strategy's hashes all derive from it,
and no result depends on how rows are split into batches.

Bad input: a vector of the wrong size or with a NaN stops the run naming the row id
(`semantic_math.vectors_of`); a corpus (or sample) smaller than a level's K reduces that
K to the points it clusters (figures `k` against `k_requested`); a recipe without the
vector column fails at `curate validate`.
"""

from __future__ import annotations

import json
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, model_validator

from operators.base import (
    ANY,
    ORDER_COLUMN,
    BatchResult,
    ColumnType,
    GlobalOperator,
    Params,
    Stage,
    population,
    vector,
)
from operators.dedup.semantic_math import nearest_centroid, table_vectors
from operators.select.balanced_sampling import allocate, entropy_bits, take_from_cluster
from operators.select.hierarchical_kmeans import (
    LEVELS_DEFAULT,
    Hierarchy,
    default_levels,
    fit_hierarchy,
    per_level,
)

MAX_LEVELS = 5  # the paper's deepest published hierarchy has 4 levels
CLUSTER, COSINE = "_bal_l1", "_bal_cos"
_COUNT, _FIRST, _QUOTA, _PICK = "_bal_count", "_bal_first", "_bal_quota", "_bal_pick"
PerLevel = int | list[int]


class BalancedParams(Params):
    column: str = Field("embedding", description="vector column (fixed_size_list<float32>), "
                        "e.g. written by an `embed` step")
    target_size: int | None = Field(None, ge=1, description="rows to keep (give this or "
                                    "target_fraction)")
    target_fraction: float | None = Field(None, gt=0, le=1, description="share of the rows "
                                          "with a vector to keep, rounded, at least 1 row")
    levels: list[int] | None = Field(None, min_length=1, max_length=MAX_LEVELS,
                                     description="k-means clusters per level, finest first, "
                                     "e.g. [100, 10] (default: [2·√N, √N/5] for the step's N "
                                     "input rows, level 1 capped at sample/10)")
    resampling_steps: PerLevel = Field(10, description="resampling-k-means rounds per level "
                                       "(one value or one per level; paper config: 10)")
    resample_size: PerLevel | None = Field(None, description="points taken closest to each "
                                           "centroid in a resampling round (one value or one "
                                           "per level; default: half the level's mean "
                                           "cluster size; <= 1 skips resampling)")
    strategy: Literal["closest", "random"] = Field("closest", description="rows taken "
                                                   "inside a level-1 cluster: closest to "
                                                   "the centroid first, or random (seeded)")
    sample: int = Field(100_000, ge=1, le=10_000_000, description="rows the k-means fit "
                        "sees at most (a deterministic sample, by execution.seed)")
    niter: int = Field(50, ge=1, le=1000, description="k-means iterations per run "
                       "(paper: 50)")

    @model_validator(mode="after")
    def _check(self) -> BalancedParams:
        if (self.target_size is None) == (self.target_fraction is None):
            raise ValueError("give exactly one of target_size and target_fraction")
        if self.levels is not None and any(b > a for a, b in zip(self.levels, self.levels[1:],
                                                                   strict=False)):
            raise ValueError(f"levels {self.levels}: each level needs at most as many "
                             "clusters as the level below it (finest first)")
        if self.levels is not None and min(self.levels) < 1:
            raise ValueError(f"levels {self.levels}: every level needs at least 1 cluster")
        n = len(self.levels) if self.levels is not None else LEVELS_DEFAULT
        for name in ("resampling_steps", "resample_size"):
            try:
                values = per_level(getattr(self, name), n)
            except ValueError as e:
                raise ValueError(f"{name}: {e}") from None
            if any(v is not None and v < 0 for v in values):
                raise ValueError(f"{name} must be >= 0")
        return self


class BalancedSelection(GlobalOperator):
    name = "select.balanced"
    doc = ("Hierarchical k-means on embeddings (with resampling) and balanced hierarchical "
           "sampling down to a target size: every concept gets a fair share (Vo et al. 2024).")
    Params = BalancedParams
    signal_keys = {"centroid_cosine": "num",
                   **{f"cluster_l{i}": "num" for i in range(1, MAX_LEVELS + 1)}}
    reasons = ("balanced_out", "no_embedding")

    def reads(self) -> dict[str, ColumnType]:
        # Vectors of any size; the id names a row with a bad vector.
        return {self.params.column: vector(), self.ctx.id_column: ANY}

    def stages(self) -> list[Stage]:
        p: BalancedParams = self.params
        cols = (p.column, self.ctx.id_column)
        return [
            Stage("hierarchy", self.fit, kind="fit", sample=p.sample, columns=cols),
            Stage("assign", self.assign, uses=("hierarchy",)),
            Stage("sizes", cluster_sizes, kind="emit"),
            Stage("totals", cluster_totals, kind="reduce", key=CLUSTER),
            Stage("allocate", self.allocate, kind="resolve", uses=("hierarchy",)),
            Stage("pick", self.pick, kind="grouped", key=CLUSTER, columns=(COSINE, _QUOTA)),
            Stage("decide", self.decide),
        ]

    def _vectors(self, rows: pa.Table, dim: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        return table_vectors(rows, self.params.column, self.ctx.id_column, dim)

    def fit(self, sample: pa.Table) -> Hierarchy:
        """fit: the hierarchy of the sample's vectors [algorithms.md 2.3]."""
        p: BalancedParams = self.params
        x, valid = self._vectors(sample)
        levels = p.levels or default_levels(population(sample), p.sample)
        return fit_hierarchy(x[valid], levels, per_level(p.resampling_steps, len(levels)),
                             per_level(p.resample_size, len(levels)), p.niter, self.ctx.seed)

    def assign(self, rows: pa.Table, hierarchy: Hierarchy) -> BatchResult:
        """map: nearest level-1 centroid (-1 without a vector), the cosine to it, and the
        row's cluster at every level as signals."""
        x, valid = self._vectors(rows, hierarchy.dim)
        if valid.any() and hierarchy.dim is None:
            raise ValueError(f"{self.name}: the fit sample held no '{self.params.column}' "
                             "vector but other rows have one; raise `sample`")
        leaf, cos = nearest_centroid(x, hierarchy.centroids[0])
        leaf = np.where(valid, leaf, -1)
        paths = hierarchy.paths(leaf)
        cos = pa.array(cos.astype(np.float64), mask=~valid)
        table = (rows.append_column(CLUSTER, pa.array(leaf, pa.int64()))
                 .append_column(COSINE, cos))
        signals = {f"cluster_l{level + 1}": pa.array(paths[:, level].astype(np.float64),
                                                     mask=paths[:, level] < 0)
                   for level in range(hierarchy.levels)}
        return BatchResult.keep_all(table, {"centroid_cosine": cos, **signals})

    def allocate(self, side: pa.Table, rows: pa.Table, hierarchy: Hierarchy) -> pa.Table:
        """resolve: each level-1 cluster's quota, on its first row; the step's figures."""
        p: BalancedParams = self.params
        k = hierarchy.k
        leaf_sizes = np.zeros(k[0] if k else 0, np.int64)
        if side.num_rows:
            leaf_sizes[side[CLUSTER].to_numpy()] = side[_COUNT].to_numpy()
        total = int(leaf_sizes.sum())
        target = (p.target_size if p.target_size is not None
                  else max(1, round(p.target_fraction * total)) if total else 0)
        quota = (allocate(leaf_sizes, hierarchy.parents, k, target, self.ctx.seed)
                 if total else leaf_sizes)
        out = pa.table({
            ORDER_COLUMN: side[_FIRST] if side.num_rows else pa.array([], pa.int64()),
            _QUOTA: pa.array(quota[side[CLUSTER].to_numpy()] if side.num_rows else [],
                             pa.int64()),
        })
        metrics = selection_metrics(hierarchy, leaf_sizes, quota, target)
        return out.replace_schema_metadata({"curate.metrics": json.dumps(metrics)})

    def pick(self, group: pa.Table) -> pa.Table:
        """grouped (one level-1 cluster): the `_order`s of its quota's rows."""
        order = group[ORDER_COLUMN].to_numpy()
        quota = pc.max(group[_QUOTA]).as_py() if group.num_rows else None
        if not quota or group[CLUSTER][0].as_py() < 0:
            picked = np.empty(0, np.int64)
        else:
            cos = group[COSINE].to_numpy(zero_copy_only=False)
            picked = take_from_cluster(order, cos, quota, self.params.strategy, self.ctx.seed)
        return pa.table({ORDER_COLUMN: pa.array(picked, pa.int64()),
                         _PICK: pa.array(np.ones(len(picked), bool))})

    def decide(self, rows: pa.Table) -> BatchResult:
        """map: rows not picked are dropped; detail = their level-1 cluster."""
        picked = (pc.fill_null(rows[_PICK], False) if _PICK in rows.column_names
                  else pa.array(np.zeros(rows.num_rows, bool)))
        has_vector = pc.greater_equal(rows[CLUSTER], 0)
        none = pa.scalar(None, pa.string())
        reason = pc.if_else(picked, none, pc.if_else(has_vector, "balanced_out",
                                                     "no_embedding"))
        detail = pc.if_else(
            picked, none,
            pc.if_else(has_vector,
                       pc.binary_join_element_wise("cluster_l1=",
                                                   pc.cast(rows[CLUSTER], pa.string()), ""),
                       f"'{self.params.column}' is null"))
        return BatchResult(rows, reason, detail)


def cluster_sizes(rows: pa.Table) -> pa.Table:
    """emit: per level-1 cluster of the batch, its rows and its first `_order`."""
    leaf = rows[CLUSTER].to_numpy() if rows.num_rows else np.empty(0, np.int64)
    order = rows[ORDER_COLUMN].to_numpy() if rows.num_rows else np.empty(0, np.int64)
    has = leaf >= 0
    return _totals(leaf[has], np.ones(int(has.sum()), np.int64), order[has])


def cluster_totals(side: pa.Table) -> pa.Table:
    """reduce (whole clusters): rows per level-1 cluster and its first `_order`."""
    if not side.num_rows:
        return _totals(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.int64))
    return _totals(side[CLUSTER].to_numpy(), side[_COUNT].to_numpy(), side[_FIRST].to_numpy())


def _totals(leaf: np.ndarray, count: np.ndarray, first: np.ndarray) -> pa.Table:
    clusters, index = np.unique(leaf, return_inverse=True)
    counts = np.bincount(index, weights=count, minlength=len(clusters)).astype(np.int64)
    firsts = np.full(len(clusters), np.iinfo(np.int64).max, np.int64)
    np.minimum.at(firsts, index, first)
    return pa.table({CLUSTER: pa.array(clusters, pa.int64()),
                     _COUNT: pa.array(counts, pa.int64()),
                     _FIRST: pa.array(firsts, pa.int64())})


def selection_metrics(hierarchy: Hierarchy, leaf_sizes: np.ndarray, quota: np.ndarray,
                      target: int) -> dict:
    """The step's figures: the hierarchy (K asked and used per level, resampling, sample
    rows), the target and rows kept, and the cluster-size entropy (bits) at the leaf and
    top levels of the input and of the kept set: balancing raises it towards log2(K)."""
    def top(sizes: np.ndarray) -> np.ndarray:
        for parent in hierarchy.parents:
            sizes = np.bincount(parent, weights=sizes, minlength=0)
        return sizes

    return {
        "k": hierarchy.k,
        "k_requested": list(hierarchy.k_requested),
        "resampling_steps": list(hierarchy.resampling_steps),
        "resample_size": list(hierarchy.resample_size),
        "sample_rows": hierarchy.sample_rows,
        "rows_with_vector": int(leaf_sizes.sum()),
        "target": int(target),
        "selected": int(quota.sum()),
        "clusters_nonempty": int((leaf_sizes > 0).sum()),
        "entropy_bits": {
            "leaf": {"input": entropy_bits(leaf_sizes), "kept": entropy_bits(quota)},
            "top": {"input": entropy_bits(top(leaf_sizes)), "kept": entropy_bits(top(quota))},
        },
    }
