"""dedup.semantic: SemDeDup, embedding-based semantic deduplication (Abbas, Tirumala, Simig,
Ganguli, Morcos 2023, arXiv 2303.09540; algorithms.md section 2.1).

Stages (the maths is in `semantic_math`):
1. `centroids` (fit, on a bounded deterministic sample): spherical k-means with faiss
   [paper section 3, step 1]. K defaults to the corpus's live rows / 1000 (`default_k`);
   a sample smaller than K reduces K to the sample size (the fitted array's shape, in
   the run's `fitted` view, records the K used).
2. `assign` (map): each row's nearest centroid by cosine and that cosine.
   Then `splits` (fit, same sample): a cluster whose estimated corpus size exceeds
   `max_cluster_rows` is split by a k-means of its own sample rows, so no grouped call
   holds more than about that many rows [algorithms.md 2.1, "split very large
   clusters"]; twins that land in different parts of a split cluster are not compared.
3. `within` (grouped, one cluster, or part of a split one, per call): rows sorted by
   cosine to the cluster's centroid, ascending, then pairwise cosine in blocks; a row is
   removed when its cosine to any earlier row exceeds 1 - eps [paper section 3.1, steps
   2-4].
4. `across` (grouped, ours, `across_clusters: true`): the same comparison within each
   boundary group, the rows whose two nearest groups are the same pair
   (`semantic_math.boundary_pair`), so copies split by a cluster boundary still meet.
   Every row keeps its one global rank (cosine to its centroid, then `_order`), so the
   two passes' removals compose: a row is removed when either pass removed it, exactly
   the paper's rule over the union of the pairs compared.
5. `links` (emit) and `keepers` (resolve): each removed row points at its most similar
   earlier row; following the pointers across both passes ends at a kept row.
6. `decide` (map): removed rows are dropped as `semantic_duplicate`, detail = the id of
   that kept row.

Rows with a null vector (embed writes one for a null text) are kept and not compared
(cluster -1). A vector of the wrong size or with a NaN stops the run with an error
naming the row id (see `semantic_math.vectors_of`): quarantining would hide a broken
embedding step. Step metrics (`ops.metrics`): K, the fit sample's rows and the input rows
it was drawn from, clusters split, the compared groups and their size distribution,
pairs compared and rows removed; the centroids (and sub-centroids) are in the `fitted`
view; the size of the group a row was compared within is the signal `cluster_size` (0
for a row without a vector).
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
    boundary_pair,
    cluster_duplicates,
    default_k,
    fit_centroids,
    group_centroids,
    group_of,
    nearest_centroid,
    size_summary,
    split_large_clusters,
    table_vectors,
)

CLUSTER, GROUP, PAIR, COSINE = "_sem_cluster", "_sem_group", "_sem_pair", "_sem_cosine"
_KEPT, _TARGET, _SIZE = "_sem_kept", "_sem_target", "_sem_size"
# One set of decision columns per pass: removed?, max similarity, to which row (_order, id).
WITHIN = ("_sem_drop", "_sem_max", "_sem_arg", "_sem_similar")
ACROSS = ("_sem_drop2", "_sem_max2", "_sem_arg2", "_sem_similar2")
_BOUNDARY_SIZE = "_sem_size2"


class SemanticParams(Params):
    column: str = Field("embedding", description="vector column (fixed_size_list<float32>), "
                        "e.g. written by an `embed` step")
    eps: float = Field(0.15, gt=0, lt=1, description="a row is a duplicate when its cosine to "
                       "an earlier row of its cluster exceeds 1 - eps. The scale belongs to "
                       "the embedding: 0.15 (the default) suits all-MiniLM-L6-v2 (torch, onnx, "
                       "openvino), finding reworded, reordered and cut copies at ~1% of "
                       "other rows removed on our dev set (benchmarks/semantic.md); static "
                       "vectors need 0.01-0.02; 0.01 (NeMo Curator's default) keeps only "
                       "near-copies")
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
    across_clusters: bool = Field(True, description="also compare rows whose two nearest "
                                  "clusters are the same pair, so copies on either side of "
                                  "a cluster boundary are found (ours; false: the paper's "
                                  "within-cluster comparison only)")


class SemanticDedup(GlobalOperator):
    name = "dedup.semantic"
    doc = ("SemDeDup: k-means on embeddings, then drop rows whose cosine to an earlier row "
           "of their cluster exceeds 1 - eps; keeps the row farthest from the centroid.")
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
            Stage("within", self.within, kind="grouped", key=GROUP,
                  columns=(*cols, COSINE), metrics=self.metrics),
            *([Stage("across", self.across, kind="grouped", key=PAIR,
                     columns=(*cols, COSINE), metrics=boundary_metrics)]
              if p.across_clusters else []),
            Stage("links", self.links, kind="emit"),
            Stage("keepers", self.keepers, kind="resolve", refs=(_TARGET,),
                  columns=(self.ctx.id_column,)),
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
        group the row is compared within (its cluster, or its part of a split one) and its
        boundary group (`boundary_pair`)."""
        # No centroids (no vector in the sample): every row is cluster -1, any size goes.
        x, valid = self._vectors(rows, centroids.shape[1] if len(centroids) else None)
        cluster, cos = nearest_centroid(x, centroids)
        group = np.where(valid, group_of(x, cluster, splits, len(centroids)), -1)
        cluster = np.where(valid, cluster, -1)
        pair = boundary_pair(x, group, group_centroids(centroids, splits))
        table = (rows.append_column(CLUSTER, pa.array(cluster, pa.int64()))
                 .append_column(GROUP, pa.array(group, pa.int64()))
                 .append_column(PAIR, pa.array(pair, pa.int64()))
                 .append_column(COSINE, pa.array(cos.astype(np.float64), mask=~valid)))
        return BatchResult.keep_all(table)

    def within(self, group: pa.Table) -> pa.Table:
        """grouped: one cluster's (or split part's) decisions, one output row per row.

        Keep rule [paper section 3.1; SemDeDup `sort_clusters.py`, `keep_hard: True`, the
        paper's default]: sort by cosine to the centroid ascending (ties by `_order`), so
        the row farthest from the centroid comes first and is the one kept of each
        duplicate group; the paper keeps these "hard" examples because the prototypical
        ones near the centroid carry the least information.
        """
        return self._compare(group, GROUP, WITHIN, _SIZE)

    def across(self, group: pa.Table) -> pa.Table:
        """grouped: one boundary group's decisions, by the same rule and global rank."""
        return self._compare(group, PAIR, ACROSS, _BOUNDARY_SIZE)

    def _compare(self, group: pa.Table, key: str, names: tuple[str, ...], size_name: str
                 ) -> pa.Table:
        order = group[ORDER_COLUMN].to_numpy()
        n = len(order)
        drop, best, arg, similar = names
        if n == 0 or group[key][0].as_py() == -1:  # no vector or no boundary: no pairs
            size = np.zeros(n, np.int64) if key == PAIR else np.full(n, n, np.int64)
            return pa.table({ORDER_COLUMN: pa.array(order, pa.int64()),
                             drop: pa.array(np.zeros(n, bool)),
                             best: pa.nulls(n, pa.float64()), arg: pa.nulls(n, pa.int64()),
                             similar: pa.nulls(n, pa.string()),
                             size_name: pa.array(size, pa.int64())})
        x, _ = self._vectors(group)
        cos = group[COSINE].to_numpy(zero_copy_only=False)
        sort = np.lexsort((order, cos))
        removed, maxsim, nearest, _ = cluster_duplicates(x[sort], self.params.eps,
                                                         self.params.block)
        ids = np.array(pc.cast(group[self.ctx.id_column], pa.string()).to_pylist(),
                       dtype=object)[sort]
        sorted_order = order[sort]
        has = nearest >= 0
        maxsim = maxsim.astype(np.float64)
        return pa.table({
            ORDER_COLUMN: pa.array(sorted_order, pa.int64()),
            drop: pa.array(removed, pa.bool_()),
            best: pa.array(maxsim, mask=np.isnan(maxsim)),
            arg: pa.array(np.where(has, sorted_order[np.maximum(nearest, 0)], 0), pa.int64(),
                          mask=~has),
            similar: pa.array(np.where(has, ids[np.maximum(nearest, 0)], None), pa.string()),
            size_name: pa.array(np.full(n, n, np.int64)),
        })

    def _passes(self, rows: pa.Table) -> tuple[np.ndarray, np.ndarray, np.ndarray, list]:
        """Both passes combined: removed, max similarity (NaN: none), the _order of the most
        similar earlier row (-1: none) and its id. A pass that never ran counts as none."""
        n = rows.num_rows
        removed = np.zeros(n, bool)
        best = np.full(n, -np.inf)
        arg = np.full(n, -1, np.int64)
        similar: list = [None] * n
        for drop, mx, at, sim in (WITHIN, ACROSS):
            if drop not in rows.column_names:
                continue
            d = pc.fill_null(rows[drop], False).to_numpy(zero_copy_only=False)
            m = pc.fill_null(rows[mx], -np.inf).to_numpy(zero_copy_only=False)
            # The pointer follows the more similar row; the first pass wins ties.
            better = m > best
            removed |= d
            best = np.where(better, m, best)
            arg = np.where(better, pc.fill_null(rows[at], -1).to_numpy(zero_copy_only=False),
                           arg)
            ids = rows[sim].to_pylist()
            similar = [i if b else s for i, s, b in zip(ids, similar, better.tolist(),
                                                        strict=True)]
        return removed, np.where(np.isinf(best), np.nan, best), arg, similar

    def links(self, rows: pa.Table) -> pa.Table:
        """emit: (removed row, the earlier row it is most similar to), for removed rows only:
        side records proportional to the duplicates, not to the corpus."""
        removed, _, arg, _ = self._passes(rows)
        return pa.table({ORDER_COLUMN: pa.array(rows[ORDER_COLUMN].to_numpy()[removed],
                                                pa.int64()),
                         _TARGET: pa.array(arg[removed], pa.int64())})

    def keepers(self, side: pa.Table, rows: pa.Table) -> pa.Table:
        """resolve: each removed row's kept row, by following the pointers (each points at
        a row of lower rank, so every chain ends at a row that no pass removed)."""
        if side.num_rows == 0 or _TARGET not in side.column_names:
            return pa.table({ORDER_COLUMN: pa.array([], pa.int64()),
                             _KEPT: pa.array([], pa.string())}).replace_schema_metadata(
                {"curate.metrics": json.dumps({"removed": 0})})
        side = side.sort_by(ORDER_COLUMN)
        order, target = side[ORDER_COLUMN].to_numpy(), side[_TARGET].to_numpy()
        keeper = target.copy()
        while True:  # pointer jumping: a target that is itself removed moves on
            at = np.searchsorted(order, keeper).clip(max=len(order) - 1)
            moved = order[at] == keeper
            if not moved.any():
                break
            keeper = np.where(moved, target[at], keeper)
        named = rows.sort_by(ORDER_COLUMN)
        at = np.searchsorted(named[ORDER_COLUMN].to_numpy(), keeper)
        ids = pc.cast(named[self.ctx.id_column], pa.string()).take(pa.array(at))
        out = pa.table({ORDER_COLUMN: pa.array(order, pa.int64()), _KEPT: ids})
        return out.replace_schema_metadata(
            {"curate.metrics": json.dumps({"removed": int(side.num_rows)})})

    def decide(self, rows: pa.Table) -> BatchResult:
        """map: drop the removed rows; detail = the kept row's id; the signals."""
        if WITHIN[0] not in rows.column_names:  # no live rows reached the grouped stage
            return BatchResult.keep_all(rows)
        removed, best, _, similar = self._passes(rows)
        none = pa.scalar(None, pa.string())
        cluster = rows[CLUSTER]
        kept = rows[_KEPT] if _KEPT in rows.column_names else pa.nulls(rows.num_rows,
                                                                         pa.string())
        signals = {
            "cluster": pc.if_else(pc.equal(cluster, -1), pa.scalar(None, pa.float64()),
                                  pc.cast(cluster, pa.float64())),
            "centroid_cosine": rows[COSINE],
            "max_similarity": pa.array(best, pa.float64(), mask=np.isnan(best)),
            "similar_to": pa.array(similar, pa.string()),
            "cluster_size": pc.cast(rows[_SIZE], pa.float64()),
        }
        removed = pa.array(removed)
        return BatchResult(rows, pc.if_else(removed, "semantic_duplicate", none),
                           pc.if_else(removed, kept, none), signals)


    def metrics(self, decisions: pa.Table) -> dict:
        """Step figures: the fits' (when they ran in this process; a resumed step reuses
        recorded centroids) and `cluster_metrics`."""
        return {**getattr(self, "_figures", {}), **cluster_metrics(decisions)}


def boundary_metrics(decisions: pa.Table) -> dict:
    """Figures of the `across` pass: boundary groups compared and their pairs."""
    if _BOUNDARY_SIZE not in decisions.column_names:
        return {"boundary_groups": 0, "boundary_pairs_compared": 0}
    size = decisions[_BOUNDARY_SIZE].to_numpy()
    sizes, rows = np.unique(size[size > 0], return_counts=True)
    groups = rows // np.maximum(sizes, 1)
    return {"boundary_groups": int(groups.sum()),
            "boundary_group_size": size_summary(np.repeat(sizes, groups)),
            "boundary_pairs_compared": int((groups * sizes * (sizes - 1) // 2).sum())}


def cluster_metrics(decisions: pa.Table) -> dict:
    """Figures from every row's group size (0: no vector, not compared): groups compared
    (`clusters`: a split cluster counts once per part), their size distribution, pairs
    compared (sum of n(n-1)/2) and rows this pass removed (`keepers` reports the step's
    `removed`)."""
    if _SIZE not in decisions.column_names:
        return {"clusters": 0, "pairs_compared": 0, "removed_within": 0}
    size = decisions[_SIZE].to_numpy()
    size = size[size > 0]
    sizes, rows = np.unique(size, return_counts=True)
    clusters = rows // np.maximum(sizes, 1)  # a cluster of n rows holds n rows of size n
    per_cluster = np.repeat(sizes, clusters)
    return {
        "clusters": int(clusters.sum()),
        "cluster_size": size_summary(per_cluster),
        "pairs_compared": int((clusters * sizes * (sizes - 1) // 2).sum()),
        "removed_within": int(pc.sum(pc.fill_null(decisions[WITHIN[0]], False)).as_py()
                              or 0),
        "unclustered_rows": int((decisions[_SIZE].to_numpy() == 0).sum()),
    }
