"""Every command of the README's "Using it" block, run as written (issue 10, item 9)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess

import pytest

from tests.cli.test_cli import CURATE
from tests.conftest import REPO

pytestmark = pytest.mark.ray
PLACEHOLDERS = ("HEAD", "JOB")  # cluster commands: run against a real head in test_cluster


def readme_commands() -> list[str]:
    """The `curate ...` lines of the first bash block under "## Using it"."""
    text = (REPO / "README.md").read_text()
    block = re.search(r"## Using it\s+```bash\n(.*?)```", text, re.S).group(1)
    joined = block.replace("\\\n", " ")
    commands = [line.split("  #")[0].strip() for line in joined.splitlines()]
    return [c for c in commands if c.startswith("curate ")]


def test_readme_block_is_found_and_lists_the_main_commands():
    commands = readme_commands()
    verbs = {shlex.split(c)[1] for c in commands}
    assert {"run", "stats", "validate", "ops", "sample", "submit", "status"} <= verbs


def test_every_local_readme_command_works_as_written(tmp_path):
    # A scratch copy of the layout the README assumes (run from the repo root).
    for name in ("recipes", "data"):
        (tmp_path / name).symlink_to(REPO / name)
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "COLUMNS": "200"}
    ran = 0
    for command in readme_commands():
        if any(p in command for p in PLACEHOLDERS):
            continue
        argv = [CURATE, *shlex.split(command)[1:]]
        res = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, env=env,
                             timeout=300)
        assert res.returncode == 0, f"{command}\n{res.stderr[-3000:]}"
        assert "Traceback" not in res.stderr, command
        ran += 1
    assert ran >= 8
    assert (tmp_path / "out" / "mine" / "part-00000-0000.parquet").is_file()


@pytest.mark.parametrize(("target", "does"), [
    ("demo", "curate run recipes/quickstart.yaml"), ("test", "-m pytest")])
def test_the_two_setup_commands_exist(target, does):
    res = subprocess.run(["make", "-n", target], cwd=REPO, capture_output=True, text=True)
    assert res.returncode == 0 and does in res.stdout, res.stderr
