"""Setup errors through the real entry point: one `error:` line, no traceback."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.cli.test_cli import curate

# Nothing listens on the discard port: the connection is refused at once.
UNREACHABLE = "http://127.0.0.1:9"


def assert_one_error_line(res: subprocess.CompletedProcess, code: int = 1) -> str:
    """The command failed with `code` and said why in exactly one `error:` line."""
    assert res.returncode == code, res.stdout + res.stderr
    assert "Traceback" not in res.stderr
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    return lines[0]


def test_validate_names_a_missing_embed_model_path(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: e\ninput: {path: 'x/*.parquet'}\noutput: {path: out}\nsteps:\n"
                      "  - op: embed\n    params:\n      model: /nonexistent/m\n")
    res = curate("validate", str(recipe))
    assert res.returncode == 2
    assert f"{recipe}:7: step 'embed' (steps[0]): model:" in res.stderr
    assert "'/nonexistent/m' does not exist" in res.stderr


@pytest.mark.parametrize("args", [("status", "job-1"), ("logs", "job-1"),
                                  ("logs", "job-1", "--follow"), ("stop", "job-1")])
def test_job_commands_explain_an_unreachable_address(args):
    line = assert_one_error_line(curate(*args, "--address", UNREACHABLE))
    assert f"is the Ray dashboard at {UNREACHABLE} running?" in line
    assert "--address or RAY_ADDRESS" in line


def test_the_address_comes_from_ray_address_too():
    line = assert_one_error_line(curate("status", "job-1", env={"RAY_ADDRESS": UNREACHABLE}))
    assert f"cannot connect to {UNREACHABLE}" in line


@pytest.mark.parametrize("command", ["status", "logs", "stop"])
def test_a_missing_token_file_is_one_line(command, tmp_path):
    missing = tmp_path / "token"
    res = curate(command, "job-1", "--address", UNREACHABLE, "--token-file", str(missing))
    line = assert_one_error_line(res, code=2)
    assert f"--token-file {missing}: no such file" in line


def test_submit_to_an_unreachable_address_leaves_no_staging_folder(tmp_path: Path):
    # A private TMPDIR: the staging folder would be made there, and no other process's
    # /tmp/curate-job-* folder can blur the before/after comparison.
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    res = curate("submit", "recipes/quickstart.yaml", "--address", UNREACHABLE,
                 "--output", str(tmp_path / "out"), env={"TMPDIR": str(tmp)})
    assert list(tmp.glob("curate-job-*")) == []
    line = assert_one_error_line(res)
    assert line.startswith("error: cannot submit: cannot connect to")


def test_submit_with_a_missing_token_file_is_one_line(tmp_path):
    res = curate("submit", "recipes/quickstart.yaml", "--address", UNREACHABLE,
                 "--token-file", str(tmp_path / "token"))
    assert "no such file" in assert_one_error_line(res, code=2)
