"""Ray Jobs: submit a recipe to a cluster, follow it, stop it.

The job runs `python -m curate.cli run recipe.yaml` on the cluster. Its runtime
environment uploads this checkout's `curate`, `operators` and `pipelines` packages
(so the code that validated the recipe is the code that runs it) and a working dir
holding the resolved recipe. Token auth: when the cluster has `RAY_AUTH_MODE=token`,
Ray's client reads the token from `RAY_AUTH_TOKEN`, the file named by
`RAY_AUTH_TOKEN_PATH`, or `~/.ray/auth_token`; `--token-file` sets the second. The
token is sent as a header and never printed.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

import curate
import operators
import pipelines

DEFAULT_ADDRESS = "http://127.0.0.1:8265"
TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}


def configure_auth(token_file: Path | None) -> None:
    """Point Ray's client at a token file (auth mode `token`); the token stays unread here."""
    if token_file is not None:
        if not token_file.is_file():
            raise FileNotFoundError(f"token file {token_file} does not exist")
        os.environ["RAY_AUTH_TOKEN_PATH"] = str(token_file.resolve())
        os.environ["RAY_AUTH_MODE"] = "token"


def client(address: str | None):
    from ray.job_submission import JobSubmissionClient

    return JobSubmissionClient(address or os.environ.get("RAY_ADDRESS") or DEFAULT_ADDRESS)


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
    (staging / "recipe.yaml").write_text(yaml.safe_dump(cluster_recipe(raw), sort_keys=False))
    modules = [str(Path(m.__file__).parent) for m in (curate, operators, pipelines)]
    return client(address).submit_job(
        entrypoint="python -m curate.cli run recipe.yaml",
        runtime_env={"working_dir": str(staging), "py_modules": modules,
                     "env_vars": {"PYTHONUNBUFFERED": "1"}},
        metadata={"curate_recipe": name},
    )


def status(job_id: str, address: str | None) -> str:
    return str(client(address).get_job_status(job_id).value)


def logs(job_id: str, address: str | None) -> str:
    return client(address).get_job_logs(job_id)


def stop(job_id: str, address: str | None) -> bool:
    return client(address).stop_job(job_id)


def follow(job_id: str, address: str | None, emit: Callable[[str], None],
           poll_s: float = 1.0) -> str:
    """Stream new log text to `emit` until the job ends; returns its final status."""
    c = client(address)
    shown = 0
    while True:
        state = str(c.get_job_status(job_id).value)
        text = c.get_job_logs(job_id)
        if len(text) > shown:
            emit(text[shown:])
            shown = len(text)
        if state in TERMINAL:
            return state
        time.sleep(poll_s)
