"""Cluster commands against a real token-protected Ray head: plain errors, no leftovers."""

from __future__ import annotations

import pytest

from tests.cli.test_cli import curate
from tests.cli.test_cli_errors import assert_one_error_line
from tests.integration.test_cluster import ray_head, token_file  # noqa: F401 - fixtures

pytestmark = pytest.mark.ray


@pytest.mark.parametrize("command", ["status", "logs", "stop"])
def test_an_unknown_job_id_is_one_line(ray_head, token_file, command):  # noqa: F811
    res = curate(command, "raysubmit_nope", "--address", ray_head, "--token-file",
                 str(token_file))
    line = assert_one_error_line(res)
    assert f"no job 'raysubmit_nope' on the cluster at {ray_head}" in line


@pytest.mark.parametrize("mode", ["token", "disabled"])
def test_no_token_is_one_line(ray_head, tmp_path, mode):  # noqa: F811
    # An empty HOME: no ~/.ray/auth_token to fall back on.
    res = curate("status", "raysubmit_nope", "--address", ray_head,
                 env={"RAY_AUTH_MODE": mode, "HOME": str(tmp_path)})
    line = assert_one_error_line(res)
    assert "requires an auth token and none was sent: pass --token-file" in line


@pytest.mark.parametrize("command", ["status", "stop"])
def test_a_wrong_token_is_one_line(ray_head, tmp_path, command):  # noqa: F811
    wrong = tmp_path / "wrong-token"
    wrong.write_text("0" * 64)
    res = curate(command, "raysubmit_nope", "--address", ray_head, "--token-file", str(wrong))
    assert "rejected the auth token" in assert_one_error_line(res)


def test_a_successful_submit_leaves_no_staging_folder(ray_head, token_file, tmp_path):  # noqa: F811
    # The job must still run from the uploaded copy after the local folder is gone.
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    res = curate("submit", "recipes/quickstart.yaml", "--address", ray_head, "--token-file",
                 str(token_file), "--output", str(tmp_path / "out"), "--wait",
                 env={"TMPDIR": str(tmp)})
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "SUCCEEDED" in res.stdout
    assert list(tmp.glob("curate-job-*")) == []
    assert sorted((tmp_path / "out").glob("part-*.parquet"))
