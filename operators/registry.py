"""Finds operators: every `Operator` subclass with a `name` in `operators/<family>/*.py`."""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from functools import cache

import operators
from operators.base import GlobalOperator, MapOperator, Operator


class UnknownOperator(KeyError):
    def __init__(self, name: str, suggestion: str | None) -> None:
        hint = f"; did you mean '{suggestion}'?" if suggestion else ""
        super().__init__(f"unknown op '{name}'{hint} (list them with `curate ops`)")
        self.name = name
        self.suggestion = suggestion

    def __str__(self) -> str:
        return str(self.args[0])


@cache
def catalogue() -> dict[str, type[Operator]]:
    """All operators by dotted name, found by importing every module of `operators`."""
    found: dict[str, type[Operator]] = {}
    for info in pkgutil.walk_packages(operators.__path__, prefix="operators."):
        if info.name.rsplit(".", 1)[-1] == "__main__":
            continue  # a package's command line, not operators: importing it would run it
        module = importlib.import_module(info.name)
        for obj in vars(module).values():
            if (
                isinstance(obj, type)
                and issubclass(obj, Operator)
                and obj not in (Operator, MapOperator, GlobalOperator)
                and "name" in vars(obj)
            ):
                other = found.setdefault(obj.name, obj)
                if other is not obj:
                    raise RuntimeError(f"two operators named {obj.name}: {other} and {obj}")
    return dict(sorted(found.items()))


def get(name: str) -> type[Operator]:
    ops = catalogue()
    if name not in ops:
        close = difflib.get_close_matches(name, list(ops), n=1, cutoff=0.5)
        raise UnknownOperator(name, close[0] if close else None)
    return ops[name]
