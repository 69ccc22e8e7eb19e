"""`curate ops`: the operator catalogue, generated from each operator's params model."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined
from rich.console import Group
from rich.table import Table
from rich.text import Text

from operators import registry
from operators.base import ColumnType, Operator


def summary() -> Table:
    table = Table(title="operators (details: curate ops NAME)", title_justify="left")
    for col in ("op", "kind", "what it does"):
        table.add_column(col)
    for name, op in registry.catalogue().items():
        table.add_row(name, op.kind, Text(op.doc))
    return table


def _type_name(annotation: Any) -> str:
    text = getattr(annotation, "__name__", None) or repr(annotation)
    return text.replace("typing.", "").replace("NoneType", "None")


def _bounds(field: FieldInfo) -> str:
    parts = []
    for meta in field.metadata:
        for attr, sym in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            value = getattr(meta, attr, None)
            if value is not None:
                parts.append(f"{sym} {value}")
    return ", ".join(parts)


def param_rows(name: str) -> list[dict[str, str]]:
    """One dict per parameter: name, type, default, bounds, doc."""
    op = registry.get(name)
    rows = []
    for pname, field in op.Params.model_fields.items():
        default = "(required)" if field.default is PydanticUndefined else repr(field.default)
        rows.append({"param": pname, "type": _type_name(field.annotation), "default": default,
                     "bounds": _bounds(field), "doc": field.description or ""})
    return rows


def columns(name: str) -> tuple[dict[str, ColumnType], dict[str, ColumnType]] | None:
    """(reads, writes) of op `name` with its default params and context, or None when it
    cannot be built without params."""
    op_cls: type[Operator] = registry.get(name)
    try:
        params = op_cls.Params()
    except ValidationError:
        # Required params (e.g. a model path) rarely change the columns: show the
        # defaults of the others rather than nothing.
        params = op_cls.Params.model_construct()
    try:
        op = op_cls(params)
        return op.reads(), op.writes()
    except (ValueError, AttributeError, TypeError):
        return None


def _columns_text(cols: dict[str, ColumnType]) -> str:
    return ", ".join(f"{c} ({t})" for c, t in cols.items()) or "nothing"


def describe(name: str) -> Group:
    op = registry.get(name)
    params = Table(title="params", title_justify="left")
    for col in ("param", "type", "default", "bounds", "doc"):
        params.add_column(col)
    for row in param_rows(name):
        params.add_row(*(Text(v) for v in row.values()))
    parts: list[Any] = [Text(f"{op.name} ({op.kind}): {op.doc}", style="bold"), params]
    if op.signal_keys:
        parts.append(Text("signals: " + ", ".join(f"{k} ({v})" for k, v in op.signal_keys.items())))
    if op.reasons:
        parts.append(Text("drop reasons: " + ", ".join(op.reasons)))
    contract = columns(name)
    if contract is None:
        parts.append(Text("columns: depend on params"))
    else:
        parts.append(Text("reads columns: " + _columns_text(contract[0])))
        parts.append(Text("writes columns: " + _columns_text(contract[1])))
        parts.append(Text("(default params; text and id: input.text_column and id_column)",
                          style="dim"))
    return Group(*parts)
