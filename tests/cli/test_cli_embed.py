"""`curate embed prepare` through the real entry point: builds an artefact, reuses it."""

from __future__ import annotations

import json
import re

from tests.cli.test_cli import curate


def test_prepare_help_lists_its_options():
    res = curate("embed", "prepare", "--help")
    assert res.returncode == 0, res.stderr
    for option in ("--backend", "--model", "--out", "--threads", "--force"):
        assert option in res.stdout


def test_prepare_refuses_a_backend_without_artefact():
    res = curate("embed", "prepare", "--backend", "torch")
    assert res.returncode == 2
    assert "backend 'torch'" in res.stderr and "onnx, openvino, static" in res.stderr


def test_prepare_builds_onnx_into_the_user_cache_then_reuses_it(tmp_path):
    """onnx is the cheapest backend to build (~30 s on 2 cores)."""
    env = {"CURATE_CACHE_DIR": str(tmp_path)}
    res = curate("embed", "prepare", "--backend", "onnx", "--threads", "2", env=env)
    assert res.returncode == 0, res.stderr
    art = next((tmp_path / "embed").glob("*/onnx-v*"))
    assert "onnx: built in " in res.stdout and f": {art}\n" in res.stdout
    cosine = float(re.search(r"check cosine to torch: ([0-9.]+)", res.stdout).group(1))
    manifest = json.loads((art / "manifest.json").read_text())
    assert cosine == manifest["check_cosine"] and cosine > 0.98

    again = curate("embed", "prepare", "-b", "onnx", env=env)
    assert again.returncode == 0, again.stderr
    assert f"onnx: up to date: {art}\n" in again.stdout
    assert json.loads((art / "manifest.json").read_text())["built_at"] == manifest["built_at"]
