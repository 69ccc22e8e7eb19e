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
    """The user-facing error inside Ray's wrappers: the first `CurateError`, else the
    innermost cause.

    Ray re-raises a task's exception as a class deriving from both `RayTaskError` and the
    original type, whose text is the whole remote traceback; the original is its `cause`.
    Ray Data wraps a failing function's error in a `UserCodeException` that keeps only
    "UDF failed"; then the task error is returned. Ray Data marks its own failures
    `from SystemException()`, which is no cause.
    """
    best, current, seen = exc, exc, set()
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        inner = getattr(current, "cause", None)
        # UserCodeException carries only "UDF failed"; the real error is in the task
        # error's remote traceback text, which `one_line` reads.
        if isinstance(inner, BaseException) and type(inner).__name__ != "UserCodeException":
            best = current = inner
            continue
        if isinstance(current, CurateError):
            return current
        if type(current).__name__ != "SystemException":
            best = current
        current = current.__cause__
    return best


_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")


# The line naming the exception in a traceback: `pkg.mod.SomeError: message`.
_EXCEPTION_LINE = re.compile(r"^(?:[A-Za-z_]\w*\.)*([A-Za-z_]\w*(?:Error|Exception|Interrupt)):\s")


_RAY_WRAPPERS = {"UserCodeException", "RayTaskError", "SystemException"}


def one_line(exc: BaseException) -> str:
    """An error as one line of plain text: no colour codes, no traceback.

    A Ray task error's text is the remote traceback; its last exception line is the cause.
    """
    text = _ANSI.sub("", str(exc)).strip()
    lines = text.splitlines()
    if len(lines) > 1 and any(line.lstrip().startswith('File "') for line in lines):
        named = [line for line in lines if (m := _EXCEPTION_LINE.match(line))
                 and m.group(1) not in _RAY_WRAPPERS]
        if named:
            return _EXCEPTION_LINE.sub(r"\1: ", named[-1]).strip()
    first = lines[0] if lines else ""
    name = type(exc).__name__
    if isinstance(exc, CurateError | KeyboardInterrupt):
        return first or name
    return f"{name}: {first}" if first else name


class OutputError(CurateError, RuntimeError):
    """An output folder curate must not write into (it would destroy or mix user files)."""
