"""select.jest: JEST's joint example selection (Evans, Parthasarathy, Merzic, Hénaff 2024,
arXiv 2406.17711; algorithms.md section 1) as an offline recipe step over paired text.

The rows are cut into super-batches of B = `super_batch` pairs (two text columns,
`left_column` / `right_column`: prompt/answer, query/passage, title/body), and from each
the step keeps a sub-batch of b = (1 - f)·B rows sampled by `curate.select.jest`: the
SigLIP sigmoid pair losses of a learner and of a reference model over the B x B pairs
(section 1.3), the score matrix (learnability L - R by default, section 1.2) and the
blocked sequential sampler, chunk by chunk, each chunk conditioned on all chunks before
it (section 1.4).

What this computes offline (docs/jest.md): JEST is online, its learner changes every
step. Here both models are frozen, so every super-batch is scored by the same learner:
the step picks the sub-batches that a learner *in that state* would learn most from
relative to the reference. The default pair is a frozen learner that is weaker than the
reference (learner: the `static` token-vector distillation of all-MiniLM-L6-v2;
reference: all-MiniLM-L6-v2 itself, `torch`), so learnability is high for pairs the
transformer matches and the bag of tokens does not, and close to zero for pairs that
neither matches (mis-paired noise). With a learner head or a reference head from
`curate train-learner` the two models can be any trained pair. For curriculum selection
while a learner trains, use the online selector `curate.select.jest` in the training loop.

Stages:
1. `pairs` (map): rows with a null left or right text are dropped (`jest_null_pair`);
   each live row gets a sort key: its `_order` (super-batches of consecutive rows in
   input order) or, with `shuffle`, a seeded 64-bit hash of it (a seeded shuffle), and a
   block (the key's top bits) for counting.
2. `counts` (emit), `totals` (reduce by block), `offsets` (resolve, one record per
   block): the live rows before each block, attached to its first row.
3. `position` (grouped, one block per call): each row's rank among all live rows by
   (sort key, `_order`); super-batch = rank // B, slot = rank % B.
4. `select` (grouped, one super-batch per call, in an actor pool when a model is loaded;
   the B x B matrices never leave that call): embed both columns with both models, pair
   losses, score, sample. Each super-batch draws with its own generator seeded by
   (seed, super-batch index), so the result does not depend on the workers.
5. `decide` (map): rows not chosen are dropped (`jest_not_selected`, detail naming the
   super-batch) unless `action: annotate`, which keeps every row with its signals.

The last super-batch holds the n < B rows left over: it keeps k = max(1, floor(n·(1-f)))
rows in N' = min(N, k) chunks of floor(k / N') (b' = N'·floor(k / N'), at most k).
Signals per row: `learnability` (its self term L_kk - R_kk), `self_score` (S_kk of the
chosen score), `chunk` (the chunk it was drawn in, 0-based; null if not chosen),
`chosen` (1/0), `super_batch`.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, model_validator

from curate.select import jest as selector
from operators.base import (
    ANY,
    ORDER_COLUMN,
    STRING,
    BatchResult,
    ColumnType,
    Context,
    GlobalOperator,
    Params,
    Stage,
    vector,
)
from operators.select.jest_encoders import PairEncoder, SourceParams, check_head

_SORT, _BLOCK, _COUNT, _FIRST, _OFFSET = "_jst_sort", "_jst_block", "_jst_count", \
    "_jst_first", "_jst_offset"
_BATCH, _SLOT = "_jst_batch", "_jst_slot"
_CHOSEN, _CHUNK, _LEARN, _SELF, _SIZE, _KEPT = "_jst_chosen", "_jst_chunk", "_jst_learn", \
    "_jst_self", "_jst_size", "_jst_kept"
_LEAD = "_jst_lead"  # true on each super-batch's first row, to count them
_SOURCE_KEYS = ("{model: local dir, backend: torch|onnx|openvino|static, or columns: [left, "
                "right] (vector columns); head: .npz from curate train-learner; batch_size, "
                "max_tokens, threads, artefact_dir}")
_ORDER_BLOCK_BITS = 20  # input order: blocks of 2^20 consecutive `_order`s
_HASH_BLOCK_SHIFT = 52  # shuffle: blocks by the hash's top 12 bits (4,096 blocks)


class JestParams(Params):
    left_column: str = Field("prompt", description="text column of each pair's left side "
                             "(query, prompt, title)")
    right_column: str = Field("answer", description="text column of each pair's right side "
                              "(passage, answer, body)")
    super_batch: int = Field(2560, ge=2, le=65536, description="B, rows per super-batch "
                             "(algorithms.md 1.7's text setting: b = 512 at f = 0.8); a "
                             "call holds about 5 B x B float32 matrices (B = 4096: ~330 MB)")
    filter_ratio: float = Field(0.8, gt=0, lt=1, description="f, the fraction of each "
                                "super-batch filtered out: b = (1 - f)·B rows are kept")
    chunks: int = Field(16, ge=1, le=4096, description="N, chunks the sub-batch is sampled "
                        "in; B·(1 - f) must be a multiple of N")
    score: Literal["learnability", "easy_reference", "hard_learner", "independent"] = Field(
        "learnability", description="learnability: learner loss - reference loss (JEST's "
        "default); easy_reference: - reference loss; hard_learner: learner loss; independent: "
        "the diagonal of learnability only (per-example, the baseline)")
    seed: int | None = Field(None, description="sampling (and shuffle) seed (default: "
                             "execution.seed)")
    shuffle: bool = Field(False, description="form super-batches from a seeded shuffle of the "
                          "rows instead of consecutive rows in input order")
    learner: SourceParams = Field(SourceParams(backend="static"), description="the learner "
                                  f"{_SOURCE_KEYS} (default: {{backend: static}}, the static "
                                  "distillation of all-MiniLM-L6-v2, a weaker encoder)")
    reference: SourceParams = Field(SourceParams(backend="torch"), description="the reference "
                                    f"{_SOURCE_KEYS} (default: {{backend: torch}}, "
                                    "all-MiniLM-L6-v2 itself)")
    action: Literal["drop", "annotate"] = Field("drop", description="drop: rows not chosen are "
                                                "dropped (jest_not_selected); annotate: keep "
                                                "every row, with its signals")

    @model_validator(mode="after")
    def _sub_batch(self) -> JestParams:
        kept = self.super_batch * (1 - self.filter_ratio)
        if abs(kept - round(kept)) > 1e-6:
            raise ValueError(f"super_batch x (1 - filter_ratio) = {self.super_batch} x "
                             f"{1 - self.filter_ratio:g} = {kept:g} is not a whole number of "
                             "rows; choose super_batch and filter_ratio so it is")
        kept = round(kept)
        if kept < self.chunks or kept % self.chunks:
            raise ValueError(f"super_batch x (1 - filter_ratio) = {kept} rows cannot be cut "
                             f"into {self.chunks} equal chunks; make it a multiple of chunks")
        if self.left_column == self.right_column:
            raise ValueError(f"left_column and right_column are both '{self.left_column}': "
                             "a pair needs two columns")
        return self

    @property
    def sub_batch(self) -> int:
        return round(self.super_batch * (1 - self.filter_ratio))


class Jest(GlobalOperator):
    name = "select.jest"
    doc = ("JEST (joint example selection) over paired text: from each super-batch of B pairs "
           "keep a jointly learnable sub-batch of (1 - f)·B, sampled chunk by chunk.")
    Params = JestParams
    signal_keys = {"learnability": "num", "self_score": "num", "chunk": "num",
                   "chosen": "num", "super_batch": "num"}
    reasons = ("jest_not_selected", "jest_null_pair")

    def __init__(self, params: Params, context: Context | None = None) -> None:
        super().__init__(params, context)
        p: JestParams = self.params
        check_head(p.learner, "learner")
        check_head(p.reference, "reference")
        if p.score in ("learnability", "independent") and _same_model(p.learner, p.reference):
            raise ValueError(f"learner and reference are the same frozen model "
                             f"({p.learner.describe()}): learnability is zero for every pair "
                             "and the selection would be uniform; give a weaker learner, a "
                             "reference head (`curate train-learner`) or another score")
        self._encoders: tuple[PairEncoder, PairEncoder] | None = None

    @property
    def seed(self) -> int:
        return self.params.seed if self.params.seed is not None else self.ctx.seed

    def _loads_model(self) -> bool:
        return self.params.learner.columns is None or self.params.reference.columns is None

    def _vector_columns(self) -> list[str]:
        p: JestParams = self.params
        return [c for src in (p.learner, p.reference) if src.columns for c in src.columns]

    def reads(self) -> dict[str, ColumnType]:
        p: JestParams = self.params
        cols: dict[str, ColumnType] = {self.ctx.id_column: ANY}
        if self._loads_model():
            cols |= {p.left_column: STRING, p.right_column: STRING}
        for src in (p.learner, p.reference):
            if src.columns:
                cols |= {c: vector() for c in src.columns}
        return cols

    def __getstate__(self) -> dict:
        # Shipped to actors before setup(); loaded models are never pickled.
        state = self.__dict__.copy()
        state["_encoders"] = None
        return state

    def setup(self) -> None:
        if self._encoders is None:
            from operators.embed.embed import default_threads

            threads = default_threads(self.ctx.actors)
            learner = PairEncoder(self.params.learner, threads)
            self._encoders = (learner, PairEncoder(self.params.reference, threads, learner))

    def stages(self) -> list[Stage]:
        p: JestParams = self.params
        texts = (p.left_column, p.right_column) if self._loads_model() else ()
        return [
            Stage("pairs", self.pairs),
            Stage("counts", block_counts, kind="emit"),
            Stage("totals", block_totals, kind="reduce", key=_BLOCK),
            Stage("offsets", block_offsets, kind="resolve", refs=(_FIRST,)),
            Stage("position", self.position, kind="grouped", key=_BLOCK,
                  columns=(_SORT, _OFFSET)),
            Stage("select", self.select, kind="grouped", key=_BATCH,
                  # Once each: a column may serve twice (both models' vectors, the id).
                  columns=tuple(dict.fromkeys((_SLOT, self.ctx.id_column, *texts,
                                               *self._vector_columns()))),
                  actor=self._loads_model(), metrics=self.metrics),
            Stage("decide", self.decide),
        ]

    # ---- super-batches -------------------------------------------------------------------

    def pairs(self, rows: pa.Table) -> BatchResult:
        """map: drop rows without both texts; a sort key and a block per live row."""
        p: JestParams = self.params
        order = rows[ORDER_COLUMN].to_numpy()
        if p.shuffle:
            sort = splitmix64(order, self.seed)
            block = (sort >> np.uint64(_HASH_BLOCK_SHIFT)).astype(np.int64)
        else:
            sort = order.astype(np.uint64)
            block = order >> _ORDER_BLOCK_BITS
        table = (rows.append_column(_SORT, pa.array(sort, pa.uint64()))
                 .append_column(_BLOCK, pa.array(block, pa.int64())))
        if not self._loads_model():
            return BatchResult.keep_all(table)
        for param, col in (("left_column", p.left_column), ("right_column", p.right_column)):
            if col not in rows.column_names:  # a JSONL input is only known once read
                have = ", ".join(c for c in rows.column_names if not c.startswith("_"))
                raise ValueError(f"select.jest: the rows have no column '{col}' ({param}); "
                                 f"they have: {have}")
        missing = [pc.is_null(rows[c]) for c in (p.left_column, p.right_column)]
        null = pc.or_(*missing)
        none = pa.scalar(None, pa.string())
        detail = pc.if_else(missing[0], f"{p.left_column} is null",
                            pa.scalar(f"{p.right_column} is null"))
        return BatchResult(table, pc.if_else(null, "jest_null_pair", none),
                           pc.if_else(null, detail, none))

    def position(self, group: pa.Table) -> pa.Table:
        """grouped (one block): global rank by (sort key, `_order`) -> super-batch, slot."""
        order = group[ORDER_COLUMN].to_numpy()
        offset = pc.max(group[_OFFSET]).as_py() or 0  # set on the block's first row only
        rank = np.empty(len(order), np.int64)
        rank[np.lexsort((order, group[_SORT].to_numpy()))] = np.arange(len(order)) + offset
        b = self.params.super_batch
        return pa.table({ORDER_COLUMN: pa.array(order, pa.int64()),
                         _BATCH: pa.array(rank // b, pa.int64()),
                         _SLOT: pa.array(rank % b, pa.int64())})

    # ---- selection -----------------------------------------------------------------------

    def select(self, group: pa.Table) -> pa.Table:
        """grouped (one super-batch): embed, pair losses, score, sample [sections 1.2-1.4]."""
        p: JestParams = self.params
        group = group.sort_by(_SLOT)  # the super-batch in its (possibly shuffled) order
        n, index = group.num_rows, int(group[_BATCH][0].as_py())
        (l_left, l_right), (r_left, r_right) = self._views(group)
        (l_t, l_b), (r_t, r_b) = (e.scale_bias for e in self._loaded())
        losses_l = selector.pair_losses(l_left, l_right, l_t, l_b)
        losses_r = selector.pair_losses(r_left, r_right, r_t, r_b)
        scores = selector.score_matrix(losses_l, losses_r, p.score)
        chunks, size = sub_batch_shape(n, p.super_batch, p.filter_ratio, p.chunks)
        rng = np.random.default_rng([self.seed, index])
        drawn = selector.sample_chunks(scores, chunks, size, rng)
        chunk = np.full(n, -1, np.int64)
        chunk[drawn] = np.arange(len(drawn)) // size
        learn = (np.diagonal(losses_l) - np.diagonal(losses_r)).astype(np.float64)
        out = {ORDER_COLUMN: group[ORDER_COLUMN],
               _CHOSEN: pa.array(chunk >= 0), _CHUNK: pa.array(chunk, mask=chunk < 0),
               _LEARN: pa.array(learn), _SELF: pa.array(np.diagonal(scores).astype(np.float64)),
               _SIZE: pa.array(np.full(n, n, np.int64)),
               _KEPT: pa.array(np.full(n, len(drawn), np.int64)),
               _LEAD: pa.array(np.arange(n) == 0)}
        return pa.table(out)

    def _loaded(self) -> tuple[PairEncoder, PairEncoder]:
        self.setup()
        return self._encoders

    def _views(self, group: pa.Table) -> list[tuple[np.ndarray, np.ndarray]]:
        """The learner's and the reference's (left, right) embeddings of the super-batch."""
        p: JestParams = self.params
        texts = ((group[p.left_column].to_pylist(), group[p.right_column].to_pylist())
                 if self._loads_model() else ([], []))
        views = []
        for enc in self._loaded():
            cols = enc.src.columns
            vectors = tuple(_vectors(group, c, self.ctx.id_column) for c in cols) if cols else None
            views.append(enc.pair(*texts, vectors))
        return views

    def metrics(self, out: pa.Table) -> dict:
        """The step's figures: super-batches, B, b, mean learnability chosen vs all (its CPU
        seconds are ops.seconds)."""
        p: JestParams = self.params
        figures = {"super_batch": p.super_batch, "sub_batch": p.sub_batch,
                   "chunks": p.chunks, "filter_ratio": p.filter_ratio, "score": p.score,
                   "shuffle": p.shuffle, "learner": p.learner.describe(),
                   "reference": p.reference.describe()}
        if _CHOSEN not in out.column_names or out.num_rows == 0:
            return figures | {"super_batches": 0, "rows": 0, "chosen": 0}
        chosen = out[_CHOSEN].to_numpy(zero_copy_only=False)
        learn = out[_LEARN].to_numpy()
        sizes = out[_SIZE].to_numpy()
        last = int(sizes.min()) if sizes.min() < p.super_batch else None
        return figures | {
            "super_batches": int(pc.sum(out[_LEAD]).as_py()),
            "partial_last_rows": last,
            "rows": len(chosen), "chosen": int(chosen.sum()),
            "learnability_mean_all": round(float(learn.mean()), 6),
            "learnability_mean_chosen": round(float(learn[chosen].mean()), 6)
            if chosen.any() else None,
        }

    def decide(self, rows: pa.Table) -> BatchResult:
        """map: drop the rows not chosen (or keep all, `annotate`); signals."""
        if _CHOSEN not in rows.column_names:  # no live rows reached the select stage
            return BatchResult.keep_all(rows)
        p: JestParams = self.params
        chosen = pc.fill_null(rows[_CHOSEN], True)
        signals = {"learnability": rows[_LEARN], "self_score": rows[_SELF],
                   "chunk": pc.cast(rows[_CHUNK], pa.float64()),
                   "chosen": pc.cast(rows[_CHOSEN], pa.float64()),
                   "super_batch": pc.cast(rows[_BATCH], pa.float64())}
        if p.action == "annotate":
            return BatchResult.keep_all(rows, signals)
        dropped = pc.invert(chosen)
        detail = pc.binary_join_element_wise(
            "super_batch=", pc.cast(rows[_BATCH], pa.string()),
            " kept ", pc.cast(rows[_KEPT], pa.string()), "/", pc.cast(rows[_SIZE], pa.string()),
            " learnability=", pc.cast(pc.round(rows[_LEARN], 4), pa.string()), "")
        none = pa.scalar(None, pa.string())
        return BatchResult(rows, pc.if_else(dropped, "jest_not_selected", none),
                           pc.if_else(dropped, detail, none), signals)


def sub_batch_shape(n: int, super_batch: int, filter_ratio: float, chunks: int
                    ) -> tuple[int, int]:
    """(chunks, chunk size) for a super-batch of n rows: N and B·(1 - f)/N for a full one;
    for the partial last one k = max(1, floor(n·(1 - f))) rows in N' = min(N, k) chunks of
    floor(k / N')."""
    if n == super_batch:
        return chunks, round(super_batch * (1 - filter_ratio)) // chunks
    kept = max(1, int(np.floor(round(n * (1 - filter_ratio), 6))))
    parts = min(chunks, kept)
    return parts, kept // parts


def _same_model(a: SourceParams, b: SourceParams) -> bool:
    """Whether two sources give identical embeddings and scale (so L = R)."""
    keys = ("model", "backend", "columns", "head", "max_tokens", "artefact_dir")
    return all(getattr(a, k) == getattr(b, k) for k in keys)


def _vectors(group: pa.Table, column: str, id_column: str) -> np.ndarray:
    """A vector column as (n, d) float32; a null vector is an error naming the row."""
    col = group[column].combine_chunks()
    if not pa.types.is_fixed_size_list(col.type):
        raise ValueError(f"select.jest: column '{column}' is {col.type}, needs "
                         "fixed_size_list<float32>")
    if col.null_count:
        first = pc.index(pc.is_null(col), True).as_py()
        raise ValueError(f"select.jest: column '{column}' has {col.null_count} null vectors "
                         f"in a super-batch (the first in row {id_column}="
                         f"{group[id_column][first].as_py()!r})")
    d = col.type.list_size
    return col.values.to_numpy(zero_copy_only=False).astype(np.float32).reshape(-1, d)


# ---- counting live rows per block (stages 2-3) -----------------------------------------------

def block_counts(rows: pa.Table) -> pa.Table:
    """emit: per block in the batch, its live rows and its first row's `_order`."""
    if rows.num_rows == 0:
        return _typed_counts(pa.table({}))
    return _sum_by_block(rows[_BLOCK].to_numpy(), np.ones(rows.num_rows, np.int64),
                         rows[ORDER_COLUMN].to_numpy())


def block_totals(records: pa.Table) -> pa.Table:
    """reduce (whole blocks): one record per block."""
    records = _typed_counts(records)
    return _sum_by_block(records[_BLOCK].to_numpy(), records[_COUNT].to_numpy(),
                         records[_FIRST].to_numpy())


def block_offsets(totals: pa.Table, rows: pa.Table) -> pa.Table:
    """resolve (one record per block): the live rows in all earlier blocks, attached to the
    block's first row."""
    totals = _typed_counts(totals).sort_by(_BLOCK)
    counts = totals[_COUNT].to_numpy()
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    return pa.table({ORDER_COLUMN: pa.array(totals[_FIRST].to_numpy(), pa.int64()),
                     _OFFSET: pa.array(offsets[:len(counts)], pa.int64())})


def _sum_by_block(block: np.ndarray, count: np.ndarray, first: np.ndarray) -> pa.Table:
    sort = np.lexsort((first, block))
    block, count, first = block[sort], count[sort], first[sort]
    starts = np.flatnonzero(np.r_[True, block[1:] != block[:-1]]) if len(block) else []
    return pa.table({_BLOCK: pa.array(block[starts], pa.int64()),
                     _COUNT: pa.array(np.add.reduceat(count, starts) if len(starts) else [],
                                      pa.int64()),
                     _FIRST: pa.array(first[starts], pa.int64())})


def _typed_counts(records: pa.Table) -> pa.Table:
    if _BLOCK in records.column_names:
        return records.select([_BLOCK, _COUNT, _FIRST])
    empty = pa.array([], pa.int64())
    return pa.table({_BLOCK: empty, _COUNT: empty, _FIRST: empty})


def splitmix64(order: np.ndarray, seed: int) -> np.ndarray:
    """A seeded 64-bit hash of each `_order` (splitmix64's finaliser): a shuffle that is a
    function of the rows and the seed alone."""
    with np.errstate(over="ignore"):
        z = order.astype(np.uint64) + np.uint64((seed * 0x9E3779B97F4A7C15) % (1 << 64))
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))
