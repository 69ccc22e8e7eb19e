"""Column contracts: operators declare the columns they read and write, and recipe
validation checks the whole chain, with the YAML line of the step at fault (no Ray)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
from pydantic import Field

from curate.recipe import InputSpec, RecipeError, check_columns, input_columns, parse_recipe
from operators import registry
from operators.base import (
    ANY,
    FLOAT64,
    INT64,
    STRING,
    ColumnType,
    Context,
    MapOperator,
    Params,
    type_name,
    vector,
)
from operators.dedup.exact import ExactDedup
from operators.embed.embed import Embed
from operators.filter.length import LengthFilter
from tests.conftest import write_jsonl, write_parquet

VEC384 = pa.list_(pa.float32(), 384)


class NeedsVectorParams(Params):
    dim: int | None = Field(None, description="vector size required (None: any)")


class NeedsVector(MapOperator):
    """A test-only stand-in for semantic dedup: reads `embedding` vectors."""

    name = "test.needs_vector"
    doc = "reads embedding vectors"
    Params = NeedsVectorParams

    def reads(self) -> dict[str, ColumnType]:
        return {**super().reads(), "embedding": vector(self.params.dim), "_internal": INT64}


@pytest.fixture(autouse=True)
def toy_registered(monkeypatch):
    """Let recipes name the toy operator; every real op resolves as before."""
    real = registry.get
    monkeypatch.setattr(registry, "get",
                        lambda name: NeedsVector if name == NeedsVector.name else real(name))


def recipe(input_path: Path | str, steps: str) -> str:
    return f"name: t\ninput: {{path: '{input_path}'}}\noutput: {{path: out}}\nsteps:\n{steps}"


def problems(text: str) -> list[str]:
    with pytest.raises(RecipeError) as info:
        parse_recipe(text, "r.yaml")
    return info.value.problems


@pytest.fixture
def plain(tmp_path) -> Path:
    write_parquet(tmp_path / "in" / "a.parquet", [{"id": "a", "text": "hello there"}])
    return tmp_path / "in" / "*.parquet"


# ---- the type vocabulary ------------------------------------------------------------------

def test_string_accepts_string_and_large_string_only():
    assert STRING.accepts(pa.string()) and STRING.accepts(pa.large_string())
    assert not STRING.accepts(pa.int64()) and not STRING.accepts(pa.binary())


def test_vector_accepts_fixed_size_float32_lists_of_the_right_size():
    assert vector().accepts(VEC384) and vector(384).accepts(VEC384)
    assert not vector(768).accepts(VEC384)
    assert not vector().accepts(pa.list_(pa.float64(), 384))  # float64 values
    assert not vector().accepts(pa.list_(pa.float32()))  # variable-size list
    assert not vector().accepts(pa.string())


def test_numbers_and_any():
    assert FLOAT64.accepts(pa.float64()) and not FLOAT64.accepts(pa.float32())
    assert INT64.accepts(pa.int64()) and not INT64.accepts(pa.int32())
    assert all(ANY.accepts(t) for t in (pa.string(), pa.int64(), VEC384, vector(3)))


def test_declared_types_match_declared_types():
    # A written vector of unknown size may be any size; a known one must match.
    assert vector(384).accepts(vector()) and vector().accepts(vector(384))
    assert vector(384).accepts(vector(384)) and not vector(768).accepts(vector(384))
    assert STRING.accepts(STRING) and not STRING.accepts(vector())
    assert STRING.accepts(ANY) and vector(3).accepts(ANY)  # written, type not known


def test_names_for_messages():
    assert [str(t) for t in (STRING, FLOAT64, INT64, ANY)] == ["string", "float64", "int64", "any"]
    assert vector().name == "vector<float32>" and vector(384).name == "vector<float32>[384]"
    assert type_name(VEC384) == "vector<float32>[384]"
    assert type_name(pa.int64()) == "int64" and type_name(vector(3)) == "vector<float32>[3]"


# ---- what operators declare ---------------------------------------------------------------

def test_default_contract_reads_the_context_text_column_and_writes_nothing():
    op = LengthFilter(LengthFilter.Params(), Context(text_column="body"))
    assert op.reads() == {"body": STRING} and op.writes() == {}


def test_real_operator_contracts():
    ctx = Context(text_column="body", id_column="key")
    assert ExactDedup(ExactDedup.Params(), ctx).reads() == {"body": STRING, "key": ANY}
    embed = Embed(Embed.Params(column="vec"), ctx)
    assert embed.writes() == {"vec": vector(384)}  # the packaged MiniLM, from its config
    assert Embed(Embed.Params(backend="static"), ctx).writes() == {"embedding": vector()}


# ---- the chain, through recipe validation --------------------------------------------------

def test_a_column_no_earlier_step_writes_is_an_error_at_the_step_op_line(plain):
    text = recipe(plain, "  - op: text.normalize\n  - op: test.needs_vector\n    name: semantic\n")
    assert problems(text) == [
        "6: step 'semantic' (steps[1]): needs column 'embedding' (vector<float32>) which no "
        "earlier step writes and the input does not have; add an `embed` step before it"]


def test_a_later_writer_is_named(plain):
    text = recipe(plain, "  - op: test.needs_vector\n  - op: embed\n")
    (p,) = problems(text)
    assert p.startswith("5: step 'test.needs_vector' (steps[0]): needs column 'embedding'")
    assert p.endswith("; step 'embed' (steps[1]) writes it: move it before this one")


def test_a_wrong_type_in_the_input_is_an_error_with_the_line(tmp_path):
    write_parquet(tmp_path / "in" / "a.parquet",
                  [{"id": "a", "text": "hello", "embedding": "not a vector"}])
    text = recipe(tmp_path / "in" / "*.parquet",
                  "  - op: filter.length\n  - op: test.needs_vector\n    name: semantic\n")
    assert problems(text) == [
        "6: step 'semantic' (steps[1]): column 'embedding' is string (from the input), "
        "needs vector<float32>"]


def test_a_wrong_size_written_by_an_earlier_step_names_that_step(plain):
    text = recipe(plain, "  - op: embed\n  - op: test.needs_vector\n    params: {dim: 768}\n")
    assert problems(text) == [
        "6: step 'test.needs_vector' (steps[1]): column 'embedding' is vector<float32>[384] "
        "(written by step 'embed' (steps[0])), needs vector<float32>[768]"]


def test_embed_before_it_satisfies_the_contract(plain):
    loaded = parse_recipe(recipe(plain, "  - op: embed\n  - op: test.needs_vector\n"
                                        "    params: {dim: 384}\n"))
    assert [op.name for op in loaded.operators] == ["embed", "test.needs_vector"]


def test_a_matching_input_column_satisfies_the_contract(tmp_path):
    table = pa.table({"id": ["a"], "text": ["hi"],
                      "embedding": pa.array([[0.5] * 384], VEC384)})
    write_parquet(tmp_path / "in" / "a.parquet", table.to_pylist(), table.schema)
    parse_recipe(recipe(tmp_path / "in" / "*.parquet", "  - op: test.needs_vector\n"))


def test_jsonl_or_unmatched_input_may_hold_any_column(tmp_path):
    write_jsonl(tmp_path / "in" / "a.jsonl", [{"id": "a", "text": "hi"}])
    for path in (tmp_path / "in" / "*.jsonl", tmp_path / "none" / "*.parquet"):
        parse_recipe(recipe(path, "  - op: test.needs_vector\n"))


def test_an_unreadable_parquet_file_leaves_the_input_unknown(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.parquet").write_bytes(b"not parquet")
    parse_recipe(recipe(tmp_path / "in" / "*.parquet", "  - op: test.needs_vector\n"))
    columns, complete = input_columns(InputSpec(path=str(tmp_path / "in" / "*.parquet")))
    assert columns == {"text": STRING, "id": STRING} and not complete


def test_a_remote_input_is_not_read(plain):
    spec = InputSpec(path=str(plain))
    assert input_columns(spec, local=True) == ({"text": STRING, "id": pa.string()}, True)
    assert input_columns(spec, local=False) == ({"text": STRING, "id": STRING}, False)


def test_contract_problems_are_reported_with_the_others_sorted_by_line(plain):
    text = recipe(plain, "  - op: test.needs_vector\n  - op: filter.length\n"
                         "    params: {min_words: -1}\n")
    found = problems(text)
    assert [p.split(":")[0] for p in found] == ["5", "7"]
    assert "needs column 'embedding'" in found[0] and "min_words" in found[1]


def test_after_a_step_that_failed_to_validate_missing_columns_are_not_guessed(plain):
    # The bad embed step would have written `embedding`: only its own error is reported.
    text = recipe(plain, "  - op: embed\n    params: {batch_size: 0}\n  - op: test.needs_vector\n")
    (p,) = problems(text)
    assert p.startswith("6: step 'embed' (steps[0]): batch_size:")


def test_check_columns_directly():
    ctx = Context()
    toy = NeedsVector(NeedsVector.Params(), ctx)
    embed = Embed(Embed.Params(backend="static"), ctx)
    base = {"text": STRING, "id": STRING}
    assert check_columns([("e", embed), ("s", toy)], base, True, ctx) == []
    [(i, msg)] = check_columns([("s", toy)], base, True, ctx)
    assert i == 0 and "needs column 'embedding'" in msg
    assert check_columns([("s", toy)], base, False, ctx) == []  # unknown input columns


def test_a_remote_recipe_does_not_read_local_files(tmp_path):
    # On a cluster the same glob names the cluster's files, not these.
    write_parquet(tmp_path / "in" / "a.parquet", [{"id": "a", "text": "hi", "embedding": "x"}])
    text = recipe(tmp_path / "in" / "*.parquet", "  - op: test.needs_vector\n")
    parse_recipe(text.replace("steps:", "execution: {address: 'ray://head:10001'}\nsteps:"))
