"""What the engine runs: a typed run spec, independent of how a recipe is written.

`pipelines.runner.run` takes a `RunSpec`; the CLI builds one from a validated recipe
(`curate.recipe.Recipe.run_spec`). Plain frozen values only: no pydantic, no `curate`,
so the engine can be driven without the CLI. Defaults and validation live with the
recipe schema; every field here is required.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

InputFormat = Literal["auto", "parquet", "jsonl"]
Compression = Literal["zstd", "snappy", "gzip", "none"]
Engine = Literal["auto", "ray", "inprocess"]
KeepRemoved = Literal["sample", "all", "none"]


@dataclass(frozen=True)
class InputSpec:
    path: str            # glob of input shards
    format: InputFormat  # auto: by file extension
    text_column: str
    id_column: str       # generated as FILE:ROW when absent
    max_doc_bytes: int   # larger documents (UTF-8 bytes) are quarantined
    batch_rows: int      # rows per batch read from a shard


@dataclass(frozen=True)
class OutputSpec:
    path: str            # output directory (OUT)
    rows_per_shard: int  # maximum rows per output Parquet file
    compression: Compression
    keep_removed: KeepRemoved  # dropped rows' texts kept in `removed`: a sample, all, none
    removed_per_reason: int    # sample size per input shard, step and reason


@dataclass(frozen=True)
class ExecutionSpec:
    address: str               # "local" for an embedded Ray, or a Ray address
    seed: int                  # recorded in the runs table
    concurrency: int | None    # parallel tasks/actors per step (None: Ray decides)
    num_cpus: int | None       # CPUs for an embedded Ray (None: all)
    object_store_mb: int       # object store size for an embedded Ray
    engine: Engine             # ray, inprocess, or auto (see `pipelines.runner.choose_engine`)
    inprocess_max_rows: int    # largest input that engine auto runs in process
    tokenizer: str             # counts ops' tokens (`pipelines.tokens`); "none": no counting


@dataclass(frozen=True)
class RunSpec:
    name: str                  # the recipe's name (runs.recipe; `stats` picks runs by it)
    input: InputSpec
    output: OutputSpec
    execution: ExecutionSpec
    steps: tuple[str, ...]     # each step's name, in order: one per operator
    recipe_yaml: str           # the resolved recipe text: recorded, hashed, fingerprinted
