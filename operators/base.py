"""The operator contract: what every operator declares and returns.

Operators are pure compute over Arrow tables. They know nothing of Ray, YAML or the
CLI; `pipelines/` decides where and how they run (see docs/writing-an-operator.md and
docs/architecture.md).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import AfterValidator, BaseModel, ConfigDict


class Params(BaseModel):
    """Base of every operator's parameter model: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def looks_like_path(value: str) -> bool:
    """Whether `value` can only mean a filesystem path (absolute, `.`/`~` first, or holding a
    path separator) rather than a bare name such as a model id."""
    seps = tuple(s for s in (os.sep, os.altsep) if s)
    return os.path.isabs(value) or value.startswith((".", "~")) or any(s in value for s in seps)


def local_path(kind: Literal["file", "dir"], *, holds: tuple[str, ...] = (),
               only_if_pathlike: bool = False, hint: str = "") -> AfterValidator:
    """A validator for a param that names a local file or directory which must exist.

    Use as `Annotated[str | None, local_path("dir")]`: a missing path then fails at
    `curate validate`, with the param's YAML line, instead of in a worker after Ray's
    retries. `holds`: a directory must contain at least one of these names.
    `only_if_pathlike`: bare names (see `looks_like_path`) pass unchecked, for params
    that also accept a name resolved elsewhere. `hint` ends the message (what to give
    instead). None always passes (the param is unset).
    """
    what = "directory" if kind == "dir" else "file"
    tail = f"; {hint}" if hint else ""

    def check(value: str | None) -> str | None:
        if value is None or (only_if_pathlike and not looks_like_path(value)):
            return value
        path = Path(value).expanduser()
        if not path.exists():
            raise ValueError(f"{what} '{value}' does not exist{tail}")
        if kind == "dir" and not path.is_dir():
            raise ValueError(f"'{value}' is not a directory{tail}")
        if kind == "file" and not path.is_file():
            raise ValueError(f"'{value}' is not a file{tail}")
        if holds and not any((path / name).exists() for name in holds):
            raise ValueError(f"directory '{value}' holds none of {', '.join(holds)}{tail}")
        return value

    return AfterValidator(check)


# ---- column contracts --------------------------------------------------------------------

ColumnKind = Literal["any", "string", "float64", "int64", "vector"]


@dataclass(frozen=True)
class ColumnType:
    """The type an operator needs of a column it reads, or declares for one it writes.

    `vector` is a fixed_size_list<float32>; `dim` None means any size (or, for a written
    column, a size not known until the model loads).
    """

    kind: ColumnKind
    dim: int | None = None

    @property
    def name(self) -> str:
        """How messages and `curate ops` spell it: `string`, `vector<float32>[384]`."""
        if self.kind != "vector":
            return self.kind
        return "vector<float32>" + ("" if self.dim is None else f"[{self.dim}]")

    def __str__(self) -> str:
        return self.name

    def accepts(self, dtype: pa.DataType | ColumnType) -> bool:
        """Whether a column of `dtype` satisfies this type.

        `dtype` is an Arrow type (an input column) or the `ColumnType` an earlier step
        declared it writes; what a step declares as `ANY`, or as a vector of unknown size,
        is given the benefit of the doubt: it is only known once the step runs.
        """
        if self.kind == "any":
            return True
        if isinstance(dtype, ColumnType):
            if dtype.kind == "any":
                return True
            if dtype.kind != self.kind:
                return False
            return self.dim is None or dtype.dim is None or self.dim == dtype.dim
        if self.kind == "string":
            return (pa.types.is_string(dtype) or pa.types.is_large_string(dtype)
                    or pa.types.is_string_view(dtype))
        if self.kind == "float64":
            return pa.types.is_float64(dtype)
        if self.kind == "int64":
            return pa.types.is_int64(dtype)
        return (pa.types.is_fixed_size_list(dtype) and pa.types.is_float32(dtype.value_type)
                and (self.dim is None or dtype.list_size == self.dim))


def vector(dim: int | None = None) -> ColumnType:
    """A fixed_size_list<float32> column of `dim` values per row (None: any size)."""
    return ColumnType("vector", dim)


STRING = ColumnType("string")
FLOAT64 = ColumnType("float64")
INT64 = ColumnType("int64")
ANY = ColumnType("any")


def type_name(dtype: pa.DataType | ColumnType) -> str:
    """A column type as messages spell it; Arrow vectors read like `vector()`'s name."""
    if isinstance(dtype, ColumnType):
        return dtype.name
    if pa.types.is_fixed_size_list(dtype) and pa.types.is_float32(dtype.value_type):
        return vector(dtype.list_size).name
    return str(dtype)


@dataclass(frozen=True)
class Context:
    """What an operator may know about the run it is part of."""

    text_column: str = "text"
    id_column: str = "id"
    seed: int = 0
    # Actors running each model-backed step (the pipeline's pool size), so that an actor
    # can size its thread pool to its share of the node.
    actors: int = 1


# Every batch handed to an operator carries this int64 column: the row's position in the
# input (shard-major). Tie-breaks use it, so results never depend on worker scheduling.
ORDER_COLUMN = "_order"

Signal = pa.Array  # one value per input row; float64 -> `num`, string -> `text`


@dataclass
class BatchResult:
    """Outcome of one operator on one batch, row-aligned with the input batch.

    `reason[i]` is null when row i is kept, else a short stable code; `detail[i]`
    says the specifics. `table` may carry rewritten columns (e.g. normalised text)
    but always has exactly the input's rows in the input's order.
    """

    table: pa.Table
    reason: pa.Array
    detail: pa.Array
    signals: dict[str, Signal] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = self.table.num_rows
        lengths = {"reason": len(self.reason), "detail": len(self.detail)}
        lengths |= {f"signal {k}": len(v) for k, v in self.signals.items()}
        bad = {k: v for k, v in lengths.items() if v != n}
        if bad:
            raise ValueError(f"operator result is not row-aligned with its {n}-row batch: {bad}")

    @property
    def kept_mask(self) -> pa.Array:
        return pc.is_null(self.reason)

    @classmethod
    def keep_all(cls, table: pa.Table, signals: Mapping[str, Signal] | None = None) -> BatchResult:
        nulls = pa.nulls(table.num_rows, pa.string())
        return cls(table, nulls, nulls, dict(signals or {}))


class Operator:
    """Common identity of every operator: dotted name, one-line doc, params model."""

    name: ClassVar[str]
    doc: ClassVar[str]
    kind: ClassVar[Literal["map", "global"]]
    Params: ClassVar[type[Params]] = Params
    # Signals this operator writes: key -> "num" | "text". Documented by `curate ops`.
    signal_keys: ClassVar[dict[str, str]] = {}
    # Drop reasons this operator may emit, for `curate ops` and docs.
    reasons: ClassVar[tuple[str, ...]] = ()

    def __init__(self, params: Params, context: Context | None = None) -> None:
        self.params = params
        self.ctx = context or Context()

    # Column contract, checked by `curate validate` over the whole chain before compute.
    # Only user-visible columns: names starting with `_` (bookkeeping, a global
    # operator's temporary columns) and signals are not part of it.
    def reads(self) -> dict[str, ColumnType]:
        """Columns this operator needs in its input, with their types (default: the text)."""
        return {self.ctx.text_column: STRING}

    def writes(self) -> dict[str, ColumnType]:
        """Columns this operator adds or replaces in the rows it keeps (default: none)."""
        return {}


class MapOperator(Operator):
    """A batch in, a row-aligned `BatchResult` out."""

    kind: ClassVar[Literal["map"]] = "map"
    # Model-backed operators set this: they run in a Ray actor pool and `setup()` runs
    # once per actor before the first batch.
    uses_actor: ClassVar[bool] = False

    def setup(self) -> None:
        """Load models or indexes once per worker; default: nothing to load."""

    def process(self, batch: pa.Table) -> BatchResult:
        raise NotImplementedError


StageKind = Literal["map", "emit", "reduce", "resolve", "fit", "grouped"]


@dataclass(frozen=True)
class Stage:
    """One pure step of a global operator (docs/writing-an-operator.md). Kinds:

    - `map`: fn(rows) -> BatchResult, on any batch of the live rows;
    - `emit`: fn(rows) -> pa.Table of side records (e.g. one per row and LSH band);
    - `reduce`: fn(side) -> pa.Table, each call seeing whole groups of side[`key`] (an
      integer column: hash other keys first);
    - `resolve`: fn(side, rows) -> pa.Table keyed by `_order`, called once with *all* side
      records and, for every `_order` named in the side columns `refs`, that row's
      `columns`. Its output columns are attached to those rows (null elsewhere) for
      the next `map` stage to read. Memory is bounded by the side records, which a
      well-designed operator keeps proportional to the rows it must decide on. With
      `prepare`, the workers that select those rows first turn them into
      `prepare(rows)` (keeping `_order`), so per-row work runs in parallel, not in
      the single process that calls `fn`;
    - `fit`: fn(sample) -> value, called once in one process on a deterministic sample
      of at most `sample` live rows (their `_order` and `columns`, in input order, the
      same whatever the blocks); the value is recorded under the run folder and handed,
      shared once, to every later stage that names this stage in `uses`;
    - `grouped`: fn(group) -> pa.Table keyed by `_order`, called on the live rows' `_order`,
      `key` and `columns`, one whole group of equal `key` (an integer column) at a time;
      the output columns are attached to the rows as after `resolve`. Memory per call is
      one group; a worker holds about 64 MB of projected rows at once, or one group if
      larger. With `metrics`, `metrics(all output rows)` -> dict is the step's figures
      (`ops.metrics`), as a resolve reports in `curate.metrics`.

    A fit function learns how many live rows the sample was drawn from (to size a model
    by the corpus, e.g. k-means' K) with `population(sample)`.

    A stage that names fit stages in `uses` receives their values as keyword arguments
    (`fn(rows, centroids=...)`). With `actor`, a `map` or `grouped` stage runs in an actor
    pool and the operator's `setup()` (a model, an index) runs once per actor first;
    `actor_cpus` is the CPU share each such actor reserves (None: the engine's default,
    0.5, so an actor pool never starves the read and write tasks of a small node).

    Columns an operator adds to rows should start with `_`; they are dropped after its
    last stage (signals are kept).
    """

    name: str
    fn: Callable
    kind: StageKind = "map"
    key: str | None = None
    refs: tuple[str, ...] = ()
    columns: tuple[str, ...] = ()
    prepare: Callable | None = None
    sample: int = 0
    uses: tuple[str, ...] = ()
    actor: bool = False
    actor_cpus: float | None = None
    metrics: Callable[[pa.Table], dict] | None = None


POPULATION_KEY = b"curate.population"


def population(sample: pa.Table) -> int:
    """The number of live rows a fit stage's `sample` was drawn from (the sample's own size
    when it does not say, e.g. a table built by hand in a test)."""
    meta = sample.schema.metadata or {}
    return int(meta[POPULATION_KEY]) if POPULATION_KEY in meta else sample.num_rows


class GlobalOperator(Operator):
    """An operator that must see all rows, written as a short sequence of stages."""

    kind: ClassVar[Literal["global"]] = "global"

    def setup(self) -> None:
        """Load models or indexes once per actor, for stages with `actor=True`."""

    def stages(self) -> list[Stage]:
        raise NotImplementedError
