"""Errors a run reports to the user, each naming the file (and row) at fault."""

from __future__ import annotations

import re


class CurateError(Exception):
    """An error whose message is written for the user: shown as is, without a traceback."""


class InputError(CurateError, ValueError):
    """An input shard that cannot be read at all."""


class AccountingError(CurateError, RuntimeError):
    """Rows were lost or duplicated: rows_in != rows_out + rows_dropped somewhere."""


class OutputLockedError(CurateError, RuntimeError):
    """Another run is writing to the same output directory."""


def root_cause(exc: BaseException) -> BaseException:
    """The user-facing error inside Ray's wrappers.

    Ray re-raises a task's exception as a class deriving from both `RayTaskError` and the
    original type, whose text is the whole remote traceback; the original is its `cause`.
    """
    best, current, seen = exc, exc, set()
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        inner = getattr(current, "cause", None)
        if isinstance(inner, BaseException):
            best = current = inner
            continue
        if isinstance(current, CurateError):
            return current
        current = current.__cause__
    return best


_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")


def one_line(exc: BaseException) -> str:
    """An error as one line of plain text: no colour codes, no traceback."""
    text = _ANSI.sub("", str(exc)).strip()
    first = text.splitlines()[0] if text else ""
    name = type(exc).__name__
    if isinstance(exc, CurateError | KeyboardInterrupt):
        return first or name
    return f"{name}: {first}" if first else name


class OutputError(CurateError, RuntimeError):
    """An output folder curate must not write into (it would destroy or mix user files)."""
