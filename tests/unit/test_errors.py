"""One-line error messages from Ray's wrapped exceptions, without Ray."""

from __future__ import annotations

from pipelines.errors import InputError, one_line, root_cause

REMOTE = ("\x1b[36mray::MapBatches(ReadShards)()\x1b[39m (pid=1, ip=192.0.2.2)\n"
          '  File "/w/pipelines/reader.py", line 49, in _parquet_batches\n'
          "    raise InputError(...)\n"
          "{line}\n"
          "\nThe above exception was the direct cause of the following exception:\n\n"
          '  File "/w/ray/data/_internal/util.py", line 1707, in iterate_with_retry\n'
          "ray.exceptions.UserCodeException: UDF failed to process a data block.\n"
          "Failed to apply UDF transform after 1/1 attempts (total backoff 0.0s).")


class TaskError(Exception):
    """Stands in for Ray's RayTaskError: a remote traceback as text, the error as `cause`."""

    def __init__(self, text: str, cause: BaseException | None) -> None:
        super().__init__(text)
        self.cause = cause


class UserCodeException(Exception):
    """Ray Data's wrapper, which keeps no cause."""


def test_a_curate_error_inside_a_task_error_is_the_root_cause():
    inner = InputError("/d/a.parquet: Parquet data cannot be decoded (zstd)")
    wrapped = TaskError(REMOTE.format(line=f"pipelines.errors.InputError: {inner}"), inner)
    outer = RuntimeError("dataset failed")
    outer.__cause__ = wrapped
    assert root_cause(outer) is inner
    assert one_line(root_cause(outer)) == "/d/a.parquet: Parquet data cannot be decoded (zstd)"


def test_user_code_errors_are_read_from_the_remote_traceback():
    task = TaskError(REMOTE.format(line="RuntimeError: boom in the middle"),
                     UserCodeException("UDF failed to process a data block."))
    assert root_cause(task) is task
    assert one_line(task) == "RuntimeError: boom in the middle"


def test_one_line_strips_colour_codes_and_keeps_plain_errors():
    assert one_line(ValueError("\x1b[31mred\x1b[0m text\nsecond line")) == "ValueError: red text"
    assert one_line(InputError("a.parquet: bad")) == "a.parquet: bad"
    assert one_line(KeyboardInterrupt()) == "KeyboardInterrupt"
