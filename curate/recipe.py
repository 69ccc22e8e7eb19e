"""Recipe YAML: the pydantic schema, loading with line numbers, and `--set` overrides."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from operators import registry
from operators.base import STRING, ColumnType, Context, Operator, Params, type_name
from pipelines import spec as engine
from pipelines.shards import matching_files


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class InputSpec(Strict):
    path: str = Field(description="glob of input shards, e.g. data/*.parquet or data/*.jsonl")
    format: Literal["auto", "parquet", "jsonl"] = Field(
        "auto", description="shard format; auto picks by file extension"
    )
    text_column: str = Field("text", description="column holding the document text")
    id_column: str = Field(
        "id", description="column holding a unique row id; generated as FILE:ROW when absent"
    )
    max_doc_bytes: int = Field(
        8_000_000, ge=1, description="documents larger than this (UTF-8 bytes) are quarantined"
    )
    batch_rows: int = Field(5_000, ge=1, description="rows per batch read from a shard")


class OutputSpec(Strict):
    path: str = Field(description="output directory")
    rows_per_shard: int = Field(100_000, ge=1, description="maximum rows per output Parquet file")
    compression: Literal["zstd", "snappy", "gzip", "none"] = "zstd"
    keep_removed: Literal["sample", "all", "none"] = Field(
        "sample", description="dropped rows kept with their text in the `removed` stats table: "
        "sample (removed_per_reason per input shard, step and reason), all, or none")
    removed_per_reason: int = Field(
        20, ge=1, description="rows kept per input shard, step and reason by keep_removed: sample")


class ExecutionSpec(Strict):
    address: str = Field("local", description="'local' for an embedded Ray, or a Ray address")
    seed: int = Field(0, description="seed for every randomised step")
    concurrency: int | None = Field(
        None, ge=1, description="parallel tasks/actors per step (default: Ray decides)"
    )
    num_cpus: int | None = Field(None, ge=1, description="CPUs for an embedded Ray (default: all)")
    object_store_mb: int = Field(1024, ge=128, description="object store size for embedded Ray")
    engine: Literal["auto", "ray", "inprocess"] = Field(
        "auto", description="where steps run: ray, inprocess (this process, no Ray), or auto: "
        "in process for a local run of at most inprocess_max_rows input rows, else Ray")
    inprocess_max_rows: int = Field(
        100_000, ge=0, description="largest input (rows) that engine auto runs in process")
    tokenizer: Literal["cl100k_base", "none"] = Field(
        "cl100k_base", description="tokenizer counting ops.tokens_in/tokens_out (OpenAI's "
        "cl100k_base BPE, offline); none: no token counts")

    @model_validator(mode="after")
    def _local_only(self) -> ExecutionSpec:
        if self.engine == "inprocess" and self.address != "local":
            raise ValueError("engine 'inprocess' runs in this process: it needs address 'local'")
        return self


class StepSpec(Strict):
    op: str
    name: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)


class Recipe(Strict):
    name: str
    input: InputSpec
    output: OutputSpec
    execution: ExecutionSpec = ExecutionSpec()
    steps: list[StepSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _name_steps(self) -> Recipe:
        # Unique names are checked by `parse_recipe`, which knows each step's YAML line.
        for step in self.steps:
            step.name = step.name or step.op
        return self

    def context(self) -> Context:
        return Context(self.input.text_column, self.input.id_column, self.execution.seed,
                       actors=self.execution.concurrency or 1)

    def run_spec(self, recipe_yaml: str) -> engine.RunSpec:
        """What the engine runs (`pipelines.runner.run`): this validated recipe as plain
        values; `recipe_yaml` is its resolved text (recorded, hashed, fingerprinted)."""
        i, o, x = self.input, self.output, self.execution
        return engine.RunSpec(
            name=self.name,
            input=engine.InputSpec(
                path=i.path, format=i.format, text_column=i.text_column,
                id_column=i.id_column, max_doc_bytes=i.max_doc_bytes, batch_rows=i.batch_rows),
            output=engine.OutputSpec(path=o.path, rows_per_shard=o.rows_per_shard,
                                     compression=o.compression, keep_removed=o.keep_removed,
                                     removed_per_reason=o.removed_per_reason),
            execution=engine.ExecutionSpec(
                address=x.address, seed=x.seed, concurrency=x.concurrency,
                num_cpus=x.num_cpus, object_store_mb=x.object_store_mb, engine=x.engine,
                inprocess_max_rows=x.inprocess_max_rows, tokenizer=x.tokenizer),
            steps=tuple(s.name or s.op for s in self.steps),
            recipe_yaml=recipe_yaml,
        )


class RecipeError(ValueError):
    """A recipe that cannot run, with every problem found and where it is."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__("\n".join(f"{source}:{p}" for p in problems))


class LoadedRecipe(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    recipe: Recipe
    operators: list[Operator]
    raw: dict[str, Any]

    def run_spec(self) -> engine.RunSpec:
        """The recipe's run spec, with the resolved text (overrides applied) `curate run`
        records and fingerprints."""
        return self.recipe.run_spec(yaml.safe_dump(self.raw, sort_keys=False))


# ---- YAML with line numbers -------------------------------------------------------------

def _line_index(node: yaml.Node, path: tuple = (), out: dict | None = None) -> dict:
    """Map every key path in a YAML document to its 1-based line."""
    out = {} if out is None else out
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            sub = (*path, key.value)
            out[sub] = key.start_mark.line + 1
            _line_index(value, sub, out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _line_index(item, (*path, i), out)
    return out


def _line_of(lines: dict, path: tuple) -> int:
    while path and path not in lines:
        path = path[:-1]
    return lines.get(path, 1)


# ---- overrides ---------------------------------------------------------------------------

def apply_overrides(raw: dict[str, Any], sets: list[str]) -> dict[str, Any]:
    """Apply `steps.NAME.params.KEY=VALUE` (or any dotted path) overrides in place.

    VALUE is parsed as YAML, so `0.7`, `true` and `[a, b]` get their natural types.
    A step is addressed by its `name`, or by its `op` when that op occurs once; names
    may contain dots (`steps.text.normalize.params.form=NFKC`).
    """
    for item in sets:
        if "=" not in item:
            raise RecipeError("--set", [f" '{item}' is not KEY=VALUE"])
        key, value = (part.strip() for part in item.split("=", 1))
        target: Any = raw
        parts = key.split(".")
        if parts[0] == "steps" and isinstance(raw.get("steps"), list):
            target, rest = _find_step(raw["steps"], key.removeprefix("steps."), key)
            parts = rest.split(".")
        for part in parts[:-1]:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                raise RecipeError("--set", [f" '{key}': '{part}' is not a mapping"])
        target[parts[-1]] = yaml.safe_load(value)
    return raw


def _find_step(steps: list, path: str, key: str) -> tuple[dict, str]:
    """The step whose name (or unique op) prefixes `path`, and the rest of the path."""
    refs: dict[str, list[dict]] = {}
    for step in steps:
        if isinstance(step, dict):
            ref = step.get("name") or step.get("op")
            refs.setdefault(str(ref), []).append(step)
    for ref in sorted(refs, key=len, reverse=True):
        if path.startswith(ref + "."):
            if len(refs[ref]) > 1:
                raise RecipeError("--set", [f" '{key}': '{ref}' is ambiguous; name the steps"])
            return refs[ref][0], path[len(ref) + 1:]
    raise RecipeError("--set", [f" '{key}' matches no step; steps are {list(refs)}"])


# ---- loading -----------------------------------------------------------------------------

def _format_loc(loc: tuple) -> str:
    return ".".join(str(x) for x in loc)


def load_recipe(path: str | Path, sets: list[str] | None = None) -> LoadedRecipe:
    """Parse, override and validate a recipe; every error carries its YAML line."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise RecipeError(source, [f" cannot read recipe: {exc.strerror}"]) from None
    return parse_recipe(text, source, sets or [])


def parse_recipe(text: str, source: str = "<recipe>", sets: list[str] | None = None
                 ) -> LoadedRecipe:
    """Parse, override and validate recipe text; raises one `RecipeError` listing every
    problem (structure, each step's op and params, duplicate names, column contracts),
    sorted by line."""
    try:
        node = yaml.compose(text)
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else 1
        problem = getattr(exc, "problem", None) or exc
        raise RecipeError(source, [f"{line}: invalid YAML: {problem}"]) from None
    if not isinstance(raw, dict):
        raise RecipeError(source, ["1: a recipe must be a mapping with name, input, output, steps"])
    lines = _line_index(node)
    raw = apply_overrides(raw, sets or [])
    problems: list[tuple[int, str]] = []
    recipe: Recipe | None = None
    try:
        recipe = Recipe.model_validate(raw)
    except ValidationError as exc:
        for e in exc.errors():
            loc = tuple(e["loc"])
            if len(loc) > 1 and loc[0] == "steps" and isinstance(loc[1], int):
                continue  # `_check_step` reports it, with the step's name
            problems.append((_line_of(lines, loc), f"{_format_loc(loc)}: {e['msg']}"))

    # Each step is checked from the raw mapping, so a structural error elsewhere (or in
    # the step itself) never hides its op and parameter errors.
    raw_steps = raw.get("steps")
    checked = ([_check_step(i, item, lines, problems) for i, item in enumerate(raw_steps)]
               if isinstance(raw_steps, list) else [])
    _check_unique_names(raw_steps if isinstance(raw_steps, list) else [], lines, problems)

    built: list[Operator | None] = []
    base = _base(recipe, raw)
    ctx = base.context() if base is not None else None
    for i, (op_cls, params) in enumerate(checked):
        built.append(None)
        if op_cls is None or params is None or ctx is None:
            continue
        try:
            built[i] = op_cls(params, ctx)
        except ValueError as exc:  # a constructor's cross-check, e.g. embed's column
            problems.append((_line_of(lines, ("steps", i)),
                             f"step '{_step_name(raw_steps[i])}' (steps[{i}]): {exc}"))
    if base is not None and ctx is not None:
        columns, complete = input_columns(base.input, local=base.execution.address == "local")
        steps = [(_step_name(raw_steps[i]) or "?", op) for i, op in enumerate(built)]
        for i, msg in check_columns(steps, columns, complete, ctx):
            problems.append((_line_of(lines, ("steps", i, "op")), msg))
    ops = [op for op in built if op is not None]
    if problems:
        problems.sort(key=lambda p: p[0])  # stable: same-line problems keep their order
        raise RecipeError(source, [f"{line}: {msg}" for line, msg in problems])
    assert recipe is not None  # no problems means the recipe validated
    return LoadedRecipe(recipe=recipe, operators=ops, raw=raw)


def _base(recipe: Recipe | None, raw: dict[str, Any]) -> Recipe | None:
    """The recipe whose input and context steps are built in and checked against: the
    recipe, or, when only its steps are invalid, the rest of it (so the valid steps still
    get their constructor and column checks)."""
    if recipe is not None:
        return recipe
    try:
        return Recipe.model_validate({**raw, "steps": []})
    except ValidationError:
        return None  # input/execution invalid: already reported


# ---- column contracts --------------------------------------------------------------------

ColumnTypes = dict[str, pa.DataType | ColumnType]


def input_columns(spec: InputSpec, local: bool = True) -> tuple[ColumnTypes, bool]:
    """(columns every row starts with, whether that is all of them).

    The text column (always a string by the time a step sees it: the shard checks refuse
    any other type) and the id column (generated as a string when absent), plus, for a
    local Parquet input, the first matching shard's columns, read from its footer alone.
    For JSONL, a remote input, no match or an unreadable file, the rest is unknown;
    reading never fails validation (the shard checks report unreadable files).
    """
    columns: ColumnTypes = {spec.text_column: STRING, spec.id_column: STRING}
    if not local or spec.format == "jsonl":
        return columns, False
    try:
        paths = matching_files(spec.path)
        if not paths:
            return columns, False
        schema = pq.read_schema(paths[0])  # not Parquet (e.g. auto and .jsonl): unknown
    except (OSError, ValueError, pa.ArrowException):
        return columns, False
    for f in schema:
        if not f.name.startswith("_") and f.name != spec.text_column:
            columns[f.name] = f.type
    return columns, True


def check_columns(steps: Sequence[tuple[str, Operator | None]], columns: ColumnTypes,
                  complete: bool, ctx: Context | None = None) -> list[tuple[int, str]]:
    """(step index, message) for each column a step reads that no earlier step writes and
    the input lacks, or that has a type the step cannot read.

    `steps`: (name, operator) in order, None for a step that could not be built: what it
    writes is unknown, so from there on (as for an input whose columns are not all
    known, `complete` False) a missing column is not reported; types still are.
    """
    have = {name: (dtype, "from the input") for name, dtype in columns.items()}
    problems: list[tuple[int, str]] = []
    for i, (name, op) in enumerate(steps):
        if op is None:
            complete = False
            continue
        where = f"step '{name}' (steps[{i}])"
        for col, need in op.reads().items():
            if col.startswith("_"):
                continue  # bookkeeping, not part of contracts
            if col not in have:
                if complete:
                    problems.append((i, f"{where}: needs column '{col}' ({need}) which no "
                                        "earlier step writes and the input does not have"
                                        f"{_writer_hint(col, need, steps, i, ctx)}"))
                continue
            dtype, origin = have[col]
            if not need.accepts(dtype):
                problems.append((i, f"{where}: column '{col}' is {type_name(dtype)} "
                                    f"({origin}), needs {need}"))
        for col, made in op.writes().items():
            if not col.startswith("_"):
                have[col] = (made, f"written by {where}")
    return problems


def _writer_hint(col: str, need: ColumnType, steps: Sequence[tuple[str, Operator | None]],
                 at: int, ctx: Context | None) -> str:
    """How to provide `col`: move a later step that writes it, or add an operator that
    writes it with its default params."""
    for j in range(at + 1, len(steps)):
        name, op = steps[j]
        if op is not None and col in (w := op.writes()) and need.accepts(w[col]):
            return f"; step '{name}' (steps[{j}]) writes it: move it before this one"
    writers = []
    for op_name, cls in registry.catalogue().items():
        try:
            op = cls(cls.Params(), ctx)
        except (ValidationError, ValueError, TypeError):
            continue  # needs params to say what it writes
        if col in (w := op.writes()) and need.accepts(w[col]):
            writers.append(f"`{op_name}`")
    if not writers:
        return ""
    article = "an" if writers[0][1] in "aeiou" else "a"
    return f"; add {article} {' or '.join(writers)} step before it"


def _step_name(item: Any) -> str | None:
    """A raw step's effective name (`name`, else `op`), or None when it has neither."""
    if not isinstance(item, dict):
        return None
    for key in ("name", "op"):
        if isinstance(item.get(key), str) and item[key]:
            return item[key]
    return None


def _check_step(i: int, item: Any, lines: dict, problems: list[tuple[int, str]]
                ) -> tuple[type[Operator] | None, Params | None]:
    """Validate raw step `i` on its own; append its problems; return (op class, params)."""
    try:
        StepSpec.model_validate(item)
    except ValidationError as exc:
        for e in exc.errors():
            loc = ("steps", i, *e["loc"])
            problems.append((_line_of(lines, loc), f"{_format_loc(loc)}: {e['msg']}"))
    if not isinstance(item, dict) or not isinstance(item.get("op"), str):
        return None, None  # no op to look up: StepSpec reported why
    name = _step_name(item)
    where = f"step '{name}' (steps[{i}])"
    try:
        op_cls = registry.get(item["op"])
    except registry.UnknownOperator as exc:
        problems.append((_line_of(lines, ("steps", i, "op")), f"{where}: {exc}"))
        return None, None
    raw_params = item.get("params", {})
    if not isinstance(raw_params, dict):
        return op_cls, None  # StepSpec reported it
    try:
        return op_cls, op_cls.Params.model_validate(raw_params)
    except ValidationError as exc:
        for e in exc.errors():
            loc = ("steps", i, "params", *e["loc"])
            field = _format_loc(e["loc"]) or "params"
            value = "" if e["type"] == "missing" else f" (got {e.get('input')!r})"
            problems.append((_line_of(lines, loc), f"{where}: {field}: {e['msg']}{value}"))
        return op_cls, None


def _check_unique_names(steps: list, lines: dict, problems: list[tuple[int, str]]) -> None:
    """Report each step that reuses an earlier step's name, at its `name:` (or `op:`) line."""
    first: dict[str, int] = {}
    for i, item in enumerate(steps):
        name = _step_name(item)
        if name is None:
            continue
        if name not in first:
            first[name] = i
            continue
        key = "name" if isinstance(item.get("name"), str) and item["name"] else "op"
        problems.append((
            _line_of(lines, ("steps", i, key)),
            f"step '{name}' (steps[{i}]): two steps are named '{name}' (steps[{first[name]}] "
            f"and steps[{i}]); give one a distinct `name:`"))


def safe_name(name: str) -> str:
    """A step name usable in file and column names."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
