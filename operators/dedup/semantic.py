"""dedup.semantic: SemDeDup, embedding-based semantic deduplication (Abbas, Tirumala, Simig,
Ganguli, Morcos 2023, arXiv 2303.09540; algorithms.md section 2.1).

Stages (the maths is in `semantic_math`):
1. `centroids` (fit, on a bounded deterministic sample): spherical k-means with faiss
   [paper section 3, step 1]. K defaults to the corpus's live rows / 1000 (`default_k`);
   a sample smaller than K reduces K to the sample size (the fitted array's shape, in
   the run's `fitted` view, records the K used).
   Then `splits` (fit, same sample): a cluster whose estimated corpus size exceeds
   `max_cluster_rows` is split by a k-means of its own sample rows, so no call holds
   more than about that many of its rows [algorithms.md 2.1, "split very large
   clusters"]. Groups are the clusters and the parts of split ones.
2. `assign` (map): each row's group, its cosine to its cluster's centroid (its rank), and
   with `across_clusters` its second-nearest group (`semantic_math.second_group`).
3. `spread` (emit): each row's vector goes to its group and to its second group.
4. `compare` (reduce, whole groups): a group's rows sorted by cosine to their centroid,
   ascending (ties by `_order`), then pairwise cosine in blocks; a row is removed when
   its cosine to any earlier row exceeds 1 - eps [paper section 3.1, steps 2-4], that
   bar lowered by `margin` x (1 - c) for a pair whose rows' best cosine c to a third row
   of the group is low (ours, `semantic_math.cluster_duplicates`). The rank is the
   row's own, the same in both groups it visits, so the two comparisons compose: a row
   is removed when either removes it, which is the rule over the union of the pairs
   compared (each group's c is over the rows compared there). With `margin: 0` and
   without `across_clusters` this is the paper's algorithm as written.
5. `keepers` (resolve): per row, the earlier row that removed it (else its most similar
   earlier row) over both groups; a removed row's pointers, followed (each points at a
   row of lower rank), end at a kept row.
6. `decide` (map): removed rows are dropped as `semantic_duplicate`, detail = the id of
   that kept row.

Rows with a null vector (embed writes one for a null text) are kept and not compared
(cluster -1). A vector of the wrong size or with a NaN stops the run with an error
naming the row id (see `semantic_math.vectors_of`): quarantining would hide a broken
embedding step. Step metrics (`ops.metrics`): K, the fit sample's rows and the input rows
it was drawn from, clusters split, the compared groups and their size distribution,
rows compared in a second group, pairs compared and rows removed (also those only the
second group found); the centroids (and sub-centroids) are in the `fitted` view; the
signal `cluster_size` is the number of rows compared within the row's own group (0 for a
row without a vector).
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

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
from operators.dedup.semantic_math import (
    cluster_duplicates,
    default_k,
    fit_centroids,
    group_centroids,
    group_of,
    nearest_centroid,
    second_group,
    size_summary,
    split_large_clusters,
    table_vectors,
)

CLUSTER, GROUP, SECOND, COSINE = "_sem_cluster", "_sem_group", "_sem_second", "_sem_cosine"
# Side records: a row's visit to a group (its own: role 0; its second: role 1) ...
_KEY, _ROLE, _ID = "_sem_key", "_sem_role", "_sem_id"
# ... the decisions there, and per row after `keepers`.
_DROP, _MAX, _ARG, _SIMILAR, _SIZE, _KEPT = ("_sem_drop", "_sem_max", "_sem_arg",
                                              "_sem_similar", "_sem_size", "_sem_kept")


class SemanticParams(Params):
    column: str = Field("embedding", description="vector column (fixed_size_list<float32>), "
                        "e.g. written by an `embed` step")
    eps: float = Field(0.08, gt=0, lt=1, description="a row is a duplicate when its cosine to "
                       "an earlier row of its cluster exceeds 1 - eps - margin x (1 - c) "
                       "(see margin). The scale belongs to the embedding: 0.08 (the "
                       "default) suits all-MiniLM-L6-v2 (torch, onnx, openvino), finding "
                       "reworded, reordered and cut copies at ~1% of other rows removed on "
                       "our dev sets (benchmarks/semantic.md); static vectors need "
                       "0.005-0.01; with margin 0, 0.15 and 0.015-0.02 do the same, and "
                       "0.01 (NeMo Curator's default) keeps only near-copies")
    margin: float = Field(0.25, ge=0, le=1, description="a pair's bar 1 - eps is lowered "
                          "by margin x (1 - c), c the larger of the two rows' cosines to "
                          "their most similar other row of the cluster: a copy that stands "
                          "out from both rows' other neighbours is found at a lower "
                          "similarity than look-alikes in a family of template pages "
                          "(ours, margin-based matching; +4 to +8 points of twin recall at "
                          "equal false removal, benchmarks/semantic.md); 0: the paper's "
                          "fixed bar")
    k: int | None = Field(None, ge=1, le=1_000_000, description="k-means clusters (default: "
                          "the step's input rows / 1000, at least 1; reduced to the sample "
                          "size when the sample is smaller)")
    sample: int = Field(100_000, ge=1, le=10_000_000, description="rows the k-means fit "
                        "sees at most (a deterministic sample, by execution.seed)")
    niter: int = Field(100, ge=1, le=1000, description="k-means iterations (paper: 100)")
    max_cluster_rows: int = Field(20_000, ge=100, le=10_000_000, description="a cluster "
                                  "estimated (from the fit sample) to hold more rows is "
                                  "split into parts of about this size, each compared on "
                                  "its own: bounds memory and time per call (20,000 rows "
                                  "of 384-d vectors = 31 MB)")
    block: int = Field(1024, ge=16, le=16384, description="rows per block of the pairwise "
                       "similarities inside a cluster (memory: block^2 floats)")
    across_clusters: bool = Field(True, description="also compare each row within its "
                                  "second-nearest cluster, so copies on either side of a "
                                  "cluster boundary are found (ours; about 4x the pairs "
                                  "compared, benchmarks/semantic_scale.md; false: the "
                                  "paper's within-cluster comparison only)")


class SemanticDedup(GlobalOperator):
    name = "dedup.semantic"
    doc = ("SemDeDup: k-means on embeddings, then drop rows whose cosine to an earlier row "
           "of their cluster exceeds 1 - eps, a bar lowered by the margin for a pair that "
           "stands out from both rows' other neighbours; keeps the row farthest from the "
           "centroid.")
    Params = SemanticParams
    signal_keys = {"cluster": "num", "centroid_cosine": "num", "max_similarity": "num",
                   "similar_to": "text", "cluster_size": "num"}
    reasons = ("semantic_duplicate",)

    def reads(self) -> dict[str, ColumnType]:
        # Vectors of any size; the id names the kept row in `detail`.
        return {self.params.column: vector(), self.ctx.id_column: ANY}

    def stages(self) -> list[Stage]:
        p: SemanticParams = self.params
        cols = (p.column, self.ctx.id_column)
        return [
            Stage("centroids", self.fit, kind="fit", sample=p.sample, columns=cols),
            Stage("splits", self.split, kind="fit", sample=p.sample, columns=cols,
                  uses=("centroids",)),
            Stage("assign", self.assign, uses=("centroids", "splits")),
            Stage("spread", self.spread, kind="emit"),
            Stage("compare", self.compare, kind="reduce", key=_KEY),
            Stage("keepers", self.keepers, kind="resolve"),
            Stage("decide", self.decide),
        ]

    def _vectors(self, rows: pa.Table, dim: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        return table_vectors(rows, self.params.column, self.ctx.id_column, dim)

    def fit(self, sample: pa.Table) -> np.ndarray:
        """fit: (K', d) float32 unit centroids of the sample's vectors [paper section 3]."""
        p: SemanticParams = self.params
        x, valid = self._vectors(sample)
        x = x[valid]
        rows = population(sample)
        k = p.k if p.k is not None else default_k(rows)
        centroids = fit_centroids(x, k, p.niter, self.ctx.seed)
        self._figures = {"k": len(centroids), "k_asked": k, "fit_sample_rows": len(x),
                         "input_rows": rows}
        return centroids

    def split(self, sample: pa.Table, centroids: np.ndarray) -> np.ndarray:
        """fit: (S, 1 + d) sub-centroids of the clusters too large for one call, column 0
        their parent (`semantic_math.split_large_clusters`)."""
        p: SemanticParams = self.params
        x, valid = self._vectors(sample, centroids.shape[1] if len(centroids) else None)
        splits = split_large_clusters(x[valid], centroids, population(sample),
                                      p.max_cluster_rows, p.niter, self.ctx.seed)
        self._figures = {**getattr(self, "_figures", {}),
                         "split_clusters": len(np.unique(splits[:, 0])), "split_parts":
                         len(splits)}
        return splits

    def assign(self, rows: pa.Table, centroids: np.ndarray, splits: np.ndarray
               ) -> BatchResult:
        """map: nearest centroid (cluster, -1 without a vector), the cosine to it, the
        group the row is compared within (its cluster, or its part of a split one) and
        its second-nearest group (-1: none, or `across_clusters` off)."""
        # No centroids (no vector in the sample): every row is cluster -1, any size goes.
        x, valid = self._vectors(rows, centroids.shape[1] if len(centroids) else None)
        cluster, cos = nearest_centroid(x, centroids)
        group = np.where(valid, group_of(x, cluster, splits, len(centroids)), -1)
        cluster = np.where(valid, cluster, -1)
        second = (second_group(x, group, group_centroids(centroids, splits))
                  if self.params.across_clusters else np.full(len(group), -1, np.int64))
        table = (rows.append_column(CLUSTER, pa.array(cluster, pa.int64()))
                 .append_column(GROUP, pa.array(group, pa.int64()))
                 .append_column(SECOND, pa.array(second, pa.int64()))
                 .append_column(COSINE, pa.array(cos.astype(np.float64), mask=~valid)))
        return BatchResult.keep_all(table)

    def spread(self, rows: pa.Table) -> pa.Table:
        """emit: one record per row with a vector for its group, one more for its second."""
        parts = []
        for role, key in ((0, GROUP), (1, SECOND)):
            if key not in rows.column_names:  # Ray Data's empty blocks carry no columns
                continue
            has = pc.greater_equal(rows[key], 0)
            visit = rows.filter(has)
            parts.append(pa.table({
                _KEY: visit[key], ORDER_COLUMN: visit[ORDER_COLUMN],
                _ROLE: pa.array(np.full(visit.num_rows, role, np.int8)),
                COSINE: visit[COSINE], self.params.column: visit[self.params.column],
                _ID: pc.cast(visit[self.ctx.id_column], pa.string())}))
        if not parts:
            return pa.table({})
        return pa.concat_tables(parts)

    def compare(self, side: pa.Table) -> pa.Table:
        """reduce: every group's decisions, one record per visit (see `_group`)."""
        if side.num_rows == 0 or _KEY not in side.column_names:
            return _decisions([], [], [], [], [], [], [], [])
        side = side.sort_by([(_KEY, "ascending"), (ORDER_COLUMN, "ascending")])
        keys = side[_KEY].to_numpy()
        bounds = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1], True])
        parts = [self._group(side.slice(a, b - a)) for a, b in zip(bounds[:-1], bounds[1:],
                                                                    strict=True)]
        return pa.concat_tables(parts)

    def _group(self, group: pa.Table) -> pa.Table:
        """One group: its rows in keep order, then the paper's rule in blocks.

        Keep rule [paper section 3.1; SemDeDup `sort_clusters.py`, `keep_hard: True`, the
        paper's default]: sort by cosine to the centroid ascending (ties by `_order`), so
        the row farthest from the centroid comes first and is the one kept of each
        duplicate group; the paper keeps these "hard" examples because the prototypical
        ones near the centroid carry the least information.
        """
        order = group[ORDER_COLUMN].to_numpy()
        x, _ = table_vectors(group, self.params.column, _ID)
        cos = group[COSINE].to_numpy(zero_copy_only=False)
        sort = np.lexsort((order, cos))
        removed, maxsim, nearest, _ = cluster_duplicates(x[sort], self.params.eps,
                                                         self.params.block,
                                                         self.params.margin)
        order = order[sort]
        ids = np.array(group[_ID].to_pylist(), dtype=object)[sort]
        has = nearest >= 0
        at = np.maximum(nearest, 0)
        return _decisions(group[_KEY].to_numpy()[sort], order,
                          group[_ROLE].to_numpy()[sort], removed, maxsim.astype(np.float64),
                          np.where(has, order[at], -1), np.where(has, ids[at], None),
                          # the group's own rows (its cluster), visitors not counted
                          np.full(len(order), int((group[_ROLE].to_numpy() == 0).sum())))

    def keepers(self, side: pa.Table, rows: pa.Table) -> pa.Table:
        """resolve: per row, removed by either group or not, the earlier row that removed
        it (else its most similar earlier row) over both, its own group's size, and for a
        removed row the kept row its pointers lead to (each points at a row of lower rank,
        so every chain ends at a kept one)."""
        if side.num_rows == 0 or _KEY not in side.column_names:
            return _per_row(np.zeros(0, np.int64), np.zeros(0, bool), np.zeros(0), [],
                            np.zeros(0, np.int64), [],
                            {**getattr(self, "_figures", {}), "clusters": 0,
                             "pairs_compared": 0, "removed": 0})
        # Per row, its visits that removed it first (with a margin, a visit's most
        # similar row need not be the one that removed it), then the most similar, own
        # group first on a tie.
        by = side.sort_by([(ORDER_COLUMN, "ascending"), (_DROP, "descending"),
                           (_MAX, "descending"), (_ROLE, "ascending")])
        order = by[ORDER_COLUMN].to_numpy()
        first = np.flatnonzero(np.r_[True, order[1:] != order[:-1]])
        rows_order = order[first]
        drop = by[_DROP].to_numpy(zero_copy_only=False)
        removed = np.logical_or.reduceat(drop, first)
        best = by[_MAX].to_numpy(zero_copy_only=False)[first]
        target = pc.fill_null(by[_ARG], -1).to_numpy()[first]
        similar = np.array(by[_SIMILAR].to_pylist(), dtype=object)[first]
        role = by[_ROLE].to_numpy()
        own = np.flatnonzero(role == 0)
        size = np.zeros(len(rows_order), np.int64)
        size[np.searchsorted(rows_order, order[own])] = by[_SIZE].to_numpy()[own]
        kept = np.full(len(rows_order), None, dtype=object)
        gone = np.flatnonzero(removed)
        keeper, keeper_id = target[gone], similar[gone]
        gone_order = rows_order[gone]
        while len(gone):  # pointer jumping: a target that is itself removed moves on
            at = np.searchsorted(gone_order, keeper).clip(max=len(gone) - 1)
            moved = gone_order[at] == keeper
            if not moved.any():
                break
            keeper = np.where(moved, target[gone[at]], keeper)
            keeper_id = np.where(moved, similar[gone[at]], keeper_id)
        kept[gone] = keeper_id
        # The fits' figures too, when they ran in this process (a resumed step reuses
        # recorded centroids without them).
        metrics = {**getattr(self, "_figures", {}), **group_metrics(side)}
        own_drop = np.zeros(len(rows_order), bool)
        own_drop[np.searchsorted(rows_order, order[own])] = drop[own]
        metrics.update({"removed": int(removed.sum()),
                        "removed_in_second_group_only": int((removed & ~own_drop).sum())})
        return _per_row(rows_order, removed, best, similar.tolist(), size, kept.tolist(),
                        metrics)

    def decide(self, rows: pa.Table) -> BatchResult:
        """map: drop the removed rows; detail = the kept row's id; the signals."""
        if _DROP not in rows.column_names:  # no live rows reached the comparison
            return BatchResult.keep_all(rows)
        dropped = pc.fill_null(rows[_DROP], False)
        none = pa.scalar(None, pa.string())
        cluster = rows[CLUSTER]
        signals = {
            "cluster": pc.if_else(pc.equal(cluster, -1), pa.scalar(None, pa.float64()),
                                  pc.cast(cluster, pa.float64())),
            "centroid_cosine": rows[COSINE],
            "max_similarity": rows[_MAX],
            "similar_to": rows[_SIMILAR],
            "cluster_size": pc.cast(pc.fill_null(rows[_SIZE], 0), pa.float64()),
        }
        return BatchResult(rows, pc.if_else(dropped, "semantic_duplicate", none),
                           pc.if_else(dropped, rows[_KEPT], none), signals)


def _decisions(key, order, role, removed, maxsim, arg, similar, size) -> pa.Table:
    """A group's decision records, one per visit (typed also when empty)."""
    maxsim = np.asarray(maxsim, np.float64)
    arg = np.asarray(arg, np.int64)
    return pa.table({_KEY: pa.array(key, pa.int64()), ORDER_COLUMN: pa.array(order, pa.int64()),
                     _ROLE: pa.array(role, pa.int8()), _DROP: pa.array(removed, pa.bool_()),
                     _MAX: pa.array(maxsim, mask=np.isnan(maxsim)),
                     _ARG: pa.array(arg, mask=arg < 0),
                     _SIMILAR: pa.array(similar, pa.string()),
                     _SIZE: pa.array(size, pa.int64())})


def _per_row(order: np.ndarray, removed: np.ndarray, best: np.ndarray, similar: list,
             size: np.ndarray, kept: list, metrics: dict) -> pa.Table:
    best = np.asarray(best, np.float64)
    out = pa.table({ORDER_COLUMN: pa.array(order, pa.int64()),
                    _DROP: pa.array(removed, pa.bool_()),
                    _MAX: pa.array(best, mask=np.isnan(best)),
                    _SIMILAR: pa.array(similar, pa.string()),
                    _SIZE: pa.array(size, pa.int64()), _KEPT: pa.array(kept, pa.string())})
    return out.replace_schema_metadata({"curate.metrics": json.dumps(metrics)})


def group_metrics(side: pa.Table) -> dict:
    """Figures of the comparison: groups compared (`clusters`: a split cluster counts once
    per part), the size distribution of their own rows (`cluster_size`) and of all rows
    compared in them (`compared_size`: visitors from their second group included),
    the visits, and pairs compared (sum of n(n-1)/2 over the compared rows)."""
    keys, first, compared = np.unique(side[_KEY].to_numpy(), return_index=True,
                                      return_counts=True)
    own = side[_SIZE].to_numpy()[first]
    return {"clusters": int(len(keys)), "cluster_size": size_summary(own),
            "compared_size": size_summary(compared),
            "second_group_rows": int((side[_ROLE].to_numpy() == 1).sum()),
            "pairs_compared": int((compared * (compared - 1) // 2).sum())}
