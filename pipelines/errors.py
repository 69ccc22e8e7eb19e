"""Errors a run reports to the user, each naming the file (and row) at fault."""


class InputError(ValueError):
    """An input shard that cannot be read at all."""


class AccountingError(RuntimeError):
    """Rows were lost or duplicated: rows_in != rows_out + rows_dropped somewhere."""


class OutputLockedError(RuntimeError):
    """Another run is writing to the same output directory."""


def root_cause(exc: BaseException) -> BaseException:
    """The user-facing error inside Ray's wrappers (task errors keep it as a cause)."""
    seen = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, InputError | AccountingError | OutputLockedError):
            return current
        current = getattr(current, "cause", None) or current.__cause__
    return exc
