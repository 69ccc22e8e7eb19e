"""A real Ray head on 127.0.0.1, a recipe submitted to it with `curate submit --wait`."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.cli.test_cli import curate

pytestmark = pytest.mark.ray
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


TOKEN = secrets.token_hex(32)


@pytest.fixture(scope="module")
def token_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("auth") / "token"
    path.write_text(TOKEN)
    return path


@pytest.fixture(scope="module")
def ray_head(token_file):
    """`ray start --head --block` with token auth on, in its own process group.

    Stopped by killing that group, not with `ray stop`: that would stop every Ray
    process on the machine, including the test session's embedded Ray.
    """
    dashboard = free_port()
    temp_dir = tempfile.mkdtemp(prefix="/tmp/rh-")
    log = open(Path(temp_dir) / "head.log", "w")  # noqa: SIM115 - closed in finally
    # As in a cluster image, the head's `python` is the one with curate's dependencies.
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token_file),
           "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    # Every port of its own (agents included): with a default agent port taken by another
    # Ray on this machine, the head starts but its job agent never does ("No available
    # agent to submit job").
    ports = [f"--{name}={free_port()}" for name in (
        "port", "dashboard-agent-listen-port", "dashboard-agent-grpc-port",
        "metrics-export-port", "runtime-env-agent-port", "node-manager-port",
        "object-manager-port", "ray-client-server-port")]
    head = subprocess.Popen(
        [str(BIN / "ray"), "start", "--head", "--block", *ports,
         "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}", "--num-cpus=2",
         "--disable-usage-stats", f"--temp-dir={temp_dir}", "--include-dashboard=true"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    address = f"http://127.0.0.1:{dashboard}"
    try:
        deadline = time.time() + 120
        while True:
            try:
                urllib.request.urlopen(f"{address}/api/version", timeout=2).read()
                break
            except urllib.error.HTTPError:  # 401 without a token: the server is up
                break
            except OSError:
                if head.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"Ray head did not start: {temp_dir}/head.log") from None
                time.sleep(1)
        yield address
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
        log.close()


def test_submit_wait_runs_the_quickstart_on_the_head(ray_head, token_file, tmp_path):
    out = tmp_path / "out"
    auth = ("--address", ray_head, "--token-file", str(token_file))
    res = curate("submit", "recipes/quickstart.yaml", *auth, "--output", str(out), "--wait")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert TOKEN not in res.stdout + res.stderr
    assert "submitted job" in res.stdout and "SUCCEEDED" in res.stdout
    assert "funnel" in res.stdout  # the job's own log, streamed
    job_id = res.stdout.split("submitted job", 1)[1].split()[0]

    assert sorted(p.name for p in out.glob("part-*.parquet"))
    stats = curate("stats", str(out), "SELECT op, rows_in, rows_out, rows_dropped FROM ops "
                   "ORDER BY step", "--format", "csv")
    lines = stats.stdout.splitlines()
    assert lines[0] == "op,rows_in,rows_out,rows_dropped"
    assert lines[1] == "input.read,4000,4000,0"
    assert curate("status", job_id, *auth).stdout.strip() == "SUCCEEDED"
    assert "funnel" in curate("logs", job_id, *auth).stdout


def test_submit_without_the_token_is_refused(ray_head, tmp_path):
    res = curate("submit", "recipes/quickstart.yaml", "--address", ray_head,
                 "--output", str(tmp_path), env={"RAY_AUTH_MODE": "token",
                                                  "HOME": str(tmp_path)})
    assert res.returncode == 1 and "cannot submit" in res.stderr


def test_submit_reports_an_unreachable_cluster(tmp_path):
    res = curate("submit", "recipes/quickstart.yaml", "--address",
                 f"http://127.0.0.1:{free_port()}", "--output", str(tmp_path))
    assert res.returncode == 1 and "cannot submit" in res.stderr
