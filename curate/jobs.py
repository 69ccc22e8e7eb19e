"""Ray Jobs: submit a recipe to a cluster, follow it, stop it.

The job runs `python -m curate.cli run recipe.yaml` on the cluster. Its runtime
environment uploads this checkout's `curate`, `operators` and `pipelines` packages
(so the code that validated the recipe is the code that runs it) and a working dir
holding the resolved recipe. Token auth: when the cluster has `RAY_AUTH_MODE=token`,
Ray's client reads the token from `RAY_AUTH_TOKEN`, the file named by
`RAY_AUTH_TOKEN_PATH`, or `~/.ray/auth_token`; `--token-file` sets the second. The
token is sent as a header and never printed.

Every failure the user can act on (no dashboard at the address, a missing or wrong
token, an unknown job id, a missing token file) is raised as `JobsError`, whose message
is one line saying what to do; the CLI prints it without a traceback.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

import curate
import operators
import pipelines

DEFAULT_ADDRESS = "http://127.0.0.1:8265"
TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}


class JobsError(RuntimeError):
    """A cluster command that cannot proceed; the message says what to do. `code` is the
    exit status: 2 for a bad command-line argument, 1 otherwise."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def configure_auth(token_file: Path | None) -> None:
    """Point Ray's client at a token file (auth mode `token`); the token stays unread here."""
    if token_file is not None:
        if not token_file.is_file():
            raise JobsError(f"--token-file {token_file}: no such file (give the file holding "
                            "the cluster's auth token)", code=2)
        os.environ["RAY_AUTH_TOKEN_PATH"] = str(token_file.resolve())
        os.environ["RAY_AUTH_MODE"] = "token"


def resolve_address(address: str | None) -> str:
    """The dashboard address used: `address`, else $RAY_ADDRESS, else the local default."""
    return address or os.environ.get("RAY_ADDRESS") or DEFAULT_ADDRESS


def _one_line(text: str) -> str:
    return " ".join(text.split())


@contextmanager
def explained(address: str | None, job_id: str | None = None) -> Iterator[None]:
    """Turn the Ray client's errors inside the block into a one-line `JobsError`."""
    from ray.exceptions import AuthenticationError

    where = resolve_address(address)
    try:
        yield
    except JobsError:
        raise
    except AuthenticationError as exc:
        # Ray's reason says only "missing" or "invalid"; its str() adds a paragraph of help.
        reason = exc.message.lower()
        if "invalid" in reason or "incorrect" in reason or "forbidden" in reason:
            raise JobsError(f"the cluster at {where} rejected the auth token: check that "
                            "--token-file holds the cluster's token") from None
        raise JobsError(f"the cluster at {where} requires an auth token and none was sent: "
                        "pass --token-file FILE (or set RAY_AUTH_MODE=token and "
                        "RAY_AUTH_TOKEN)") from None
    except OSError as exc:  # ConnectionError, requests' errors: nothing answers there
        text = _one_line(str(exc))
        # Ray's own text only repeats the address; other errors (DNS, TLS) say something.
        detail = "" if text.startswith("Failed to connect to Ray") else f" ({text[:200]})"
        raise JobsError(f"cannot connect to {where}{detail}: is the Ray dashboard at {where} "
                        "running? set --address or RAY_ADDRESS") from None
    except Exception as exc:  # noqa: BLE001 - Ray reports HTTP failures as RuntimeError
        text = _one_line(str(exc))
        if job_id is not None and "status code 404" in text:
            raise JobsError(f"no job '{job_id}' on the cluster at {where}: use the id that "
                            f"`curate submit` printed (`ray job list --address {where}` "
                            "lists them)") from None
        raise JobsError(f"{where}: {type(exc).__name__}: {text}") from None


def client(address: str | None):
    from ray.job_submission import JobSubmissionClient

    return JobSubmissionClient(resolve_address(address))


def cluster_recipe(raw: dict[str, Any]) -> dict[str, Any]:
    """The recipe as the cluster must see it: absolute local paths, the cluster's Ray."""
    out = yaml.safe_load(yaml.safe_dump(raw))
    for section in ("input", "output"):
        path = out[section]["path"]
        if "://" not in path:
            out[section]["path"] = os.path.abspath(path)
    out.setdefault("execution", {})["address"] = "auto"
    return out


def submit(raw: dict[str, Any], name: str, address: str | None) -> str:
    """Submit a resolved recipe; returns the job id."""
    staging = Path(tempfile.mkdtemp(prefix="curate-job-"))
    try:
        (staging / "recipe.yaml").write_text(
            yaml.safe_dump(cluster_recipe(raw), sort_keys=False))
        modules = [str(Path(m.__file__).parent) for m in (curate, operators, pipelines)]
        with explained(address):
            return client(address).submit_job(
                entrypoint="python -m curate.cli run recipe.yaml",
                runtime_env={"working_dir": str(staging), "py_modules": modules,
                             "env_vars": {"PYTHONUNBUFFERED": "1"}},
                metadata={"curate_recipe": name},
            )
    finally:
        # submit_job has uploaded the folder to the cluster (a gcs:// package) before it
        # returns, and the job runs from that copy: the local one is no longer needed.
        shutil.rmtree(staging, ignore_errors=True)


def status(job_id: str, address: str | None) -> str:
    with explained(address, job_id):
        return str(client(address).get_job_status(job_id).value)


def logs(job_id: str, address: str | None) -> str:
    with explained(address, job_id):
        return client(address).get_job_logs(job_id)


def stop(job_id: str, address: str | None) -> bool:
    with explained(address, job_id):
        return client(address).stop_job(job_id)


def follow(job_id: str, address: str | None, emit: Callable[[str], None],
           poll_s: float = 1.0) -> str:
    """Stream new log text to `emit` until the job ends; returns its final status."""
    with explained(address, job_id):
        c = client(address)
    shown = 0
    while True:
        with explained(address, job_id):
            state = str(c.get_job_status(job_id).value)
            text = c.get_job_logs(job_id)
        if len(text) > shown:
            emit(text[shown:])
            shown = len(text)
        if state in TERMINAL:
            return state
        time.sleep(poll_s)
