"""select.prototypes: D4's diversification step (Tirumala, Simig, Aghajanyan, Morcos 2023,
"D4: Improving LLM Pretraining via Document De-Duplication and Diversification", arXiv
2308.12284; algorithms.md section 2.2): after SemDeDup, re-cluster the survivors and drop
the rows nearest their cluster's centroid, the same fraction in every cluster.

D4 = MinHash -> SemDeDup (`dedup.semantic`, keeping a fraction R_dedup) -> this step
(keeping `keep_fraction` of its input). The paper's overall selection ratio R (fraction
of the MinHash-deduplicated corpus kept) is therefore R = R_dedup x keep_fraction: for a
target R, set keep_fraction = R / R_dedup, with R_dedup read from the semantic step's
funnel (`curate stats OUT "SELECT name, rows_in, rows_out FROM ops"`).

Stages (the maths is in `prototype_math`, the vector checks and k-means in
`operators.dedup.semantic_math`):
1. `centroids` (fit, one process, a bounded deterministic sample): spherical k-means with
   faiss [paper section 3, step 2: k-means is run again on the survivors; the clusters
   change once duplicates are gone]. K defaults to the step's input rows / 1000, as
   `dedup.semantic`; a sample smaller than K reduces K to the sample's rows.
2. `assign` (map, workers): each row's nearest centroid by cosine and that cosine.
3. `sizes` (emit) and `totals` (reduce by cluster): each cluster's row count.
4. `quotas` (resolve, K records in one process): rows kept per cluster, the same
   fraction in every cluster with the total exact to half a row (largest remainder,
   `prototype_math.kept_per_cluster`); attached to each cluster's first row.
5. `rank` (grouped, one cluster per call, on the workers; a call holds only the rows'
   order, cluster, cosine and quota, about 32 bytes a row): rows ranked by cosine to the
   centroid, descending, and the n - kept nearest dropped [paper section 3, step 3:
   SSL-Prototypes, Sorscher et al. 2022, "Beyond neural scaling laws", section 5 /
   appendix: prototypical examples, those closest to their cluster centroid, are the
   easiest and least informative, so they go first].
6. `decide` (map): dropped rows get reason `prototypical`, detail `cluster=C rank=R/N
   cosine=X` (rank 1 = nearest the centroid).

Rows with a null vector are kept and not clustered (cluster -1), as in `dedup.semantic`;
`keep_fraction` applies to the rows that have a vector. A vector of the wrong size, or
with a NaN or infinite value, stops the run with an error naming the row id
(`semantic_math.vectors_of`). Step metrics (`ops.metrics`): K used and asked, the rows
drawn for the fit and the input rows, non-empty clusters and their size distribution,
the clustered rows with the target and actual rows kept of them, rows removed, and the
unclustered rows; the centroids are in the `fitted` view. The
deterministic sample (by `execution.seed`), faiss's seeded k-means and tie-breaks by
input order make the decisions a function of the rows and the seed alone.
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
    default_k,
    fit_centroids,
    nearest_centroid,
    size_summary,
    table_vectors,
)
from operators.select.prototype_math import kept_per_cluster, prototype_ranks

CLUSTER, COSINE = "_pro_cluster", "_pro_cosine"
_COUNT, _FIRST, _QUOTA = "_pro_count", "_pro_first", "_pro_quota"
_DROP, _RANK, _SIZE = "_pro_drop", "_pro_rank", "_pro_size"
UNCLUSTERED = -1


class PrototypesParams(Params):
    keep_fraction: float = Field(0.8, gt=0, le=1, description="fraction of this step's input "
                                 "rows with a vector that is kept (rows without one are all "
                                 "kept), the same in every cluster, rounded by largest "
                                 "remainder so the total is round(keep_fraction x N); D4's "
                                 "overall ratio R = R_dedup x keep_fraction, R_dedup being "
                                 "the fraction dedup.semantic kept")
    column: str = Field("embedding", description="vector column (fixed_size_list<float32>), "
                        "e.g. written by an `embed` step")
    k: int | None = Field(None, ge=1, le=1_000_000, description="k-means clusters of the "
                          "re-clustering (default: the step's input rows / 1000, at least 1, "
                          "as dedup.semantic; reduced to the sample size when the sample is "
                          "smaller)")
    sample: int = Field(100_000, ge=1, le=10_000_000, description="rows the k-means fit "
                        "sees at most (a deterministic sample, by execution.seed)")
    niter: int = Field(100, ge=1, le=1000, description="k-means iterations")


class Prototypes(GlobalOperator):
    name = "select.prototypes"
    doc = ("D4 steps 2-3 (after dedup.semantic): re-cluster with k-means, then drop the rows "
           "nearest their centroid (the prototypical ones), the same fraction in every cluster.")
    Params = PrototypesParams
    signal_keys = {"cluster": "num", "centroid_cosine": "num", "cluster_size": "num",
                   "cluster_rank": "num"}
    reasons = ("prototypical",)

    def reads(self) -> dict[str, ColumnType]:
        # Vectors of any size; the id names a bad vector's row in errors.
        return {self.params.column: vector(), self.ctx.id_column: ANY}

    def stages(self) -> list[Stage]:
        p: PrototypesParams = self.params
        return [
            Stage("centroids", self.fit, kind="fit", sample=p.sample,
                  columns=(p.column, self.ctx.id_column)),
            Stage("assign", self.assign, uses=("centroids",)),
            Stage("sizes", cluster_counts, kind="emit"),
            Stage("totals", cluster_totals, kind="reduce", key=CLUSTER),
            Stage("quotas", self.quotas, kind="resolve", uses=("centroids",)),
            Stage("rank", rank_cluster, kind="grouped", key=CLUSTER, columns=(COSINE, _QUOTA)),
            Stage("decide", decide),
        ]

    def _vectors(self, rows: pa.Table, dim: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        return table_vectors(rows, self.params.column, self.ctx.id_column, dim)

    def _k(self, input_rows: int) -> int:
        return self.params.k if self.params.k is not None else default_k(input_rows)

    def fit(self, sample: pa.Table) -> np.ndarray:
        """fit: (K', d) float32 unit centroids of the sample's vectors, K' = min(K, rows
        with a vector) [D4 section 3, step 2, the re-clustering]."""
        x, valid = self._vectors(sample)
        return fit_centroids(x[valid], self._k(population(sample)), self.params.niter,
                             self.ctx.seed)

    def assign(self, rows: pa.Table, centroids: np.ndarray) -> BatchResult:
        """map: nearest centroid (-1 without a vector, or with no centroids) and its cosine."""
        x, valid = self._vectors(rows, centroids.shape[1] if len(centroids) else None)
        cluster, cos = nearest_centroid(x, centroids)
        clustered = valid & (cluster >= 0)
        table = (rows.append_column(CLUSTER, pa.array(np.where(clustered, cluster, UNCLUSTERED),
                                                      pa.int64()))
                 .append_column(COSINE, pa.array(cos.astype(np.float64), mask=~clustered)))
        return BatchResult.keep_all(table)

    def quotas(self, totals: pa.Table, rows: pa.Table, centroids: np.ndarray) -> pa.Table:
        """resolve (one record per cluster): rows kept per cluster, on each cluster's first
        row; the step's figures in the output's `curate.metrics`."""
        totals = _typed_totals(totals).sort_by(CLUSTER)
        cluster = totals[CLUSTER].to_numpy()
        size, first = totals[_COUNT].to_numpy(), totals[_FIRST].to_numpy()
        clustered = cluster != UNCLUSTERED
        sizes = size[clustered]
        kept = kept_per_cluster(sizes, self.params.keep_fraction)
        input_rows, n_clustered = int(size.sum()), int(sizes.sum())
        figures = {
            "k": len(centroids), "k_asked": self._k(input_rows),
            "fit_sample_rows": min(self.params.sample, input_rows), "input_rows": input_rows,
            "clusters": int(clustered.sum()),
            "cluster_size": size_summary(sizes),
            "clustered_rows": n_clustered,
            "target_kept": round(self.params.keep_fraction * n_clustered, 3),
            "kept": int(kept.sum()), "removed": n_clustered - int(kept.sum()),
            "unclustered_rows": input_rows - n_clustered,
        }
        out = pa.table({ORDER_COLUMN: pa.array(first[clustered], pa.int64()),
                        _QUOTA: pa.array(kept, pa.int64())})
        return out.replace_schema_metadata({b"curate.metrics": json.dumps(figures).encode()})


def cluster_counts(rows: pa.Table) -> pa.Table:
    """emit: one record per cluster in the batch: its rows and its first row's `_order`."""
    if rows.num_rows == 0:
        return _typed_totals(pa.table({}))
    cluster, order = rows[CLUSTER].to_numpy(), rows[ORDER_COLUMN].to_numpy()
    return _sum_by_cluster(cluster, np.ones(len(cluster), np.int64), order)


def cluster_totals(records: pa.Table) -> pa.Table:
    """reduce (whole clusters): the batches' records summed into one per cluster."""
    records = _typed_totals(records)
    return _sum_by_cluster(records[CLUSTER].to_numpy(), records[_COUNT].to_numpy(),
                           records[_FIRST].to_numpy())


def _sum_by_cluster(cluster: np.ndarray, count: np.ndarray, first: np.ndarray) -> pa.Table:
    sort = np.lexsort((first, cluster))
    cluster, count, first = cluster[sort], count[sort], first[sort]
    starts = np.flatnonzero(np.r_[True, cluster[1:] != cluster[:-1]]) if len(cluster) else []
    return pa.table({CLUSTER: pa.array(cluster[starts], pa.int64()),
                     _COUNT: pa.array(np.add.reduceat(count, starts) if len(starts) else [],
                                      pa.int64()),
                     _FIRST: pa.array(first[starts], pa.int64())})


def _typed_totals(records: pa.Table) -> pa.Table:
    """Side records as (cluster, count, first); an empty table (Ray Data's empty blocks
    carry no columns) becomes an empty one of those columns."""
    if CLUSTER in records.column_names:
        return records.select([CLUSTER, _COUNT, _FIRST])
    empty = pa.array([], pa.int64())
    return pa.table({CLUSTER: empty, _COUNT: empty, _FIRST: empty})


def rank_cluster(group: pa.Table) -> pa.Table:
    """grouped (one cluster): rank by cosine to the centroid, descending, and drop the
    size - quota nearest [D4 section 3, step 3]; the unclustered group keeps every row."""
    order = group[ORDER_COLUMN].to_numpy()
    n = len(order)
    if n == 0 or group[CLUSTER][0].as_py() == UNCLUSTERED:
        return _ranked(order, np.zeros(n, bool), None, np.zeros(n, np.int64))
    quota = pc.max(group[_QUOTA]).as_py()  # set on the cluster's first row only
    ranks = prototype_ranks(group[COSINE].to_numpy(zero_copy_only=False), order)
    return _ranked(order, ranks <= n - quota, ranks, np.full(n, n, np.int64))


def _ranked(order: np.ndarray, drop: np.ndarray, ranks: np.ndarray | None,
            size: np.ndarray) -> pa.Table:
    return pa.table({ORDER_COLUMN: pa.array(order, pa.int64()),
                     _DROP: pa.array(drop, pa.bool_()),
                     _RANK: (pa.array(ranks, pa.int64()) if ranks is not None
                             else pa.nulls(len(order), pa.int64())),
                     _SIZE: pa.array(size, pa.int64())})


def decide(rows: pa.Table) -> BatchResult:
    """map: drop the rows the rank stage chose; detail = cluster, rank and cosine; signals."""
    if _DROP not in rows.column_names:  # no live rows reached the grouped stage
        return BatchResult.keep_all(rows)
    dropped = pc.fill_null(rows[_DROP], False)
    clustered = pc.not_equal(rows[CLUSTER], UNCLUSTERED)
    detail = pc.binary_join_element_wise(
        "cluster=", pc.cast(rows[CLUSTER], pa.string()),
        " rank=", pc.cast(rows[_RANK], pa.string()), "/", pc.cast(rows[_SIZE], pa.string()),
        " cosine=", pc.cast(pc.round(rows[COSINE], 4), pa.string()), "")
    none = pa.scalar(None, pa.string())
    signals = {
        "cluster": pc.if_else(clustered, pc.cast(rows[CLUSTER], pa.float64()),
                              pa.scalar(None, pa.float64())),
        "centroid_cosine": rows[COSINE],
        "cluster_size": pc.cast(rows[_SIZE], pa.float64()),
        "cluster_rank": pc.cast(rows[_RANK], pa.float64()),
    }
    return BatchResult(rows, pc.if_else(dropped, "prototypical", none),
                       pc.if_else(dropped, detail, none), signals)
