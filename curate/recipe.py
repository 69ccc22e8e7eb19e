"""Recipe YAML: the pydantic schema, loading with line numbers, and `--set` overrides."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from operators import registry
from operators.base import Context, Operator, Params


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


class ExecutionSpec(Strict):
    address: str = Field("local", description="'local' for an embedded Ray, or a Ray address")
    seed: int = Field(0, description="seed for every randomised step")
    concurrency: int | None = Field(
        None, ge=1, description="parallel tasks/actors per step (default: Ray decides)"
    )
    num_cpus: int | None = Field(None, ge=1, description="CPUs for an embedded Ray (default: all)")
    object_store_mb: int = Field(1024, ge=128, description="object store size for embedded Ray")


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
        seen: dict[str, int] = {}
        for step in self.steps:
            step.name = step.name or step.op
            if step.name in seen:
                raise ValueError(
                    f"two steps are named '{step.name}'; give one a distinct `name:`"
                )
            seen[step.name] = 1
        return self

    def context(self) -> Context:
        return Context(self.input.text_column, self.input.id_column, self.execution.seed,
                       actors=self.execution.concurrency or 1)


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
    try:
        recipe = Recipe.model_validate(raw)
    except ValidationError as exc:
        problems = [
            f"{_line_of(lines, tuple(e['loc']))}: {_format_loc(e['loc'])}: {e['msg']}"
            for e in exc.errors()
        ]
        raise RecipeError(source, problems) from None

    problems: list[str] = []
    ops: list[Operator] = []
    ctx = recipe.context()
    for i, step in enumerate(recipe.steps):
        where = f"step '{step.name}' (steps[{i}])"
        try:
            op_cls = registry.get(step.op)
        except registry.UnknownOperator as exc:
            problems.append(f"{_line_of(lines, ('steps', i, 'op'))}: {where}: {exc}")
            continue
        try:
            params: Params = op_cls.Params.model_validate(step.params)
        except ValidationError as exc:
            for e in exc.errors():
                loc = ("steps", i, "params", *e["loc"])
                field = _format_loc(e["loc"]) or "params"
                value = "" if e["type"] == "missing" else f" (got {e.get('input')!r})"
                problems.append(
                    f"{_line_of(lines, loc)}: {where}: {field}: {e['msg']}{value}"
                )
            continue
        ops.append(op_cls(params, ctx))
    if problems:
        raise RecipeError(source, problems)
    return LoadedRecipe(recipe=recipe, operators=ops, raw=raw)


def safe_name(name: str) -> str:
    """A step name usable in file and column names."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
