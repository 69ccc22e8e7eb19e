"""Errors a run reports to the user, each naming the file (and row) at fault."""


class InputError(ValueError):
    """An input shard that cannot be read at all."""


class AccountingError(RuntimeError):
    """Rows were lost or duplicated: rows_in != rows_out + rows_dropped somewhere."""


class OutputLockedError(RuntimeError):
    """Another run is writing to the same output directory."""
