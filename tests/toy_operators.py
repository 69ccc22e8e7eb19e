"""A test-only global operator that uses every new stage capability at once.

`test.toy_clusters`: fit length "centroids" on a bounded sample (fit-and-broadcast),
assign each row to its nearest centroid in a model-backed stage (an actor whose
`setup()` loads a "model"), then, inside each cluster (a grouped stage, also in actors),
keep the longest text of every run of `per_group` rows and mark the others for dropping.
"""

from __future__ import annotations

import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from operators.base import (
    ORDER_COLUMN,
    BatchResult,
    GlobalOperator,
    MapOperator,
    Params,
    Stage,
)

CLUSTER, LOSER, KEEPER = "_toy_cluster", "_toy_loser", "_toy_keeper"


class ToyParams(Params):
    k: int = Field(3, ge=1)
    sample: int = Field(50, ge=1)
    per_group: int = Field(4, ge=1)


class ToyClusters(GlobalOperator):
    name = "test.toy_clusters"
    doc = "test-only: fit, actor and grouped stages"
    Params = ToyParams
    signal_keys = {"cluster": "num"}
    reasons = ("toy_loser",)

    def setup(self) -> None:
        self.scale = 1.0  # stands in for a model loaded once per actor

    def stages(self) -> list[Stage]:
        p: ToyParams = self.params
        return [
            Stage("centroids", self.fit, kind="fit", sample=p.sample,
                  columns=(self.ctx.text_column,)),
            Stage("assign", self.assign, uses=("centroids",), actor=True, actor_cpus=0.25),
            Stage("within", self.within, kind="grouped", key=CLUSTER,
                  columns=(self.ctx.text_column,), actor=True),
            Stage("decide", self.decide),
        ]

    def fit(self, sample: pa.Table) -> np.ndarray:
        lengths = pc.utf8_length(sample[self.ctx.text_column]).to_numpy(zero_copy_only=False)
        qs = np.linspace(0, 1, self.params.k + 2)[1:-1]
        return np.quantile(lengths.astype(np.float64), qs) if len(lengths) else np.zeros(1)

    def assign(self, batch: pa.Table, centroids: np.ndarray) -> BatchResult:
        lengths = pc.utf8_length(batch[self.ctx.text_column]).to_numpy(zero_copy_only=False)
        scaled = lengths.astype(np.float64) * self.scale  # AttributeError without setup()
        cluster = np.abs(scaled[:, None] - centroids[None, :]).argmin(axis=1).astype(np.int64)
        return BatchResult.keep_all(batch.append_column(CLUSTER, pa.array(cluster)))

    def within(self, group: pa.Table) -> pa.Table:
        lengths = pc.utf8_length(group[self.ctx.text_column]).to_numpy(zero_copy_only=False)
        lengths = lengths * self.scale  # AttributeError unless setup() ran in this actor
        order = group[ORDER_COLUMN].to_numpy()
        n = self.params.per_group
        loser = np.zeros(len(order), bool)
        keeper = np.empty(len(order), np.int64)
        for start in range(0, len(order), n):
            chunk = slice(start, start + n)
            best = start + int(np.argmax(lengths[chunk]))
            loser[chunk] = True
            loser[best] = False
            keeper[chunk] = order[best]
        return pa.table({ORDER_COLUMN: pa.array(order, pa.int64()),
                         LOSER: pa.array(loser), KEEPER: pa.array(keeper)})

    def decide(self, batch: pa.Table) -> BatchResult:
        loser = pc.fill_null(batch[LOSER], False)
        detail = pc.cast(batch[KEEPER], pa.string())
        none = pa.scalar(None, pa.string())
        return BatchResult(batch, pc.if_else(loser, "toy_loser", none),
                           pc.if_else(loser, detail, none),
                           {"cluster": pc.cast(batch[CLUSTER], pa.float64())})


class SlowParams(Params):
    seconds_per_row: float = Field(0.001, ge=0)


class SlowMap(MapOperator):
    """`test.slow`: keeps every row after sleeping in proportion to the batch's rows, so a
    run lasts long enough to watch its progress, whatever batches Ray Data forms."""

    name = "test.slow"
    doc = "test-only: sleeps per row, keeps every row"
    Params = SlowParams

    def process(self, batch: pa.Table) -> BatchResult:
        time.sleep(self.params.seconds_per_row * batch.num_rows)
        return BatchResult.keep_all(batch)
