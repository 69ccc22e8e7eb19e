"""Which engine a run uses: `execution.engine` and the small-input rule of `auto`."""

from __future__ import annotations

import sys
from dataclasses import replace

import pytest

from curate.recipe import RecipeError, parse_recipe
from pipelines.runner import choose_engine
from pipelines.shards import Shard


def _spec(**execution):
    body = ", ".join(f"{k}: {v}" for k, v in execution.items())
    text = f"name: t\ninput: {{path: x}}\noutput: {{path: o}}\nexecution: {{{body}}}\n"
    return parse_recipe(text).run_spec().execution


def _shards(*rows):
    return [Shard(i, f"/d/{i}.parquet", f"{i}.parquet", "parquet", n, True)
            for i, n in enumerate(rows)]


def test_auto_runs_small_local_inputs_in_process_and_the_rest_on_ray(monkeypatch):
    monkeypatch.delitem(sys.modules, "ray", raising=False)  # as in a fresh `curate run`
    ex = _spec()
    assert ex.engine == "auto" and ex.inprocess_max_rows == 100_000
    assert choose_engine(ex, _shards(40_000, 60_000)) == "inprocess"
    assert choose_engine(ex, _shards(40_000, 60_001)) == "ray"
    assert choose_engine(replace(ex, inprocess_max_rows=0), _shards(1)) == "ray"
    assert choose_engine(_spec(address="'ray://head:10001'"), _shards(10)) == "ray"


def test_auto_uses_the_ray_this_process_already_runs(monkeypatch):
    class Running:
        @staticmethod
        def is_initialized() -> bool:
            return True

    monkeypatch.setitem(sys.modules, "ray", Running)
    assert choose_engine(_spec(), _shards(10)) == "ray"


def test_an_explicit_engine_wins():
    assert choose_engine(_spec(engine="ray"), _shards(10)) == "ray"
    assert choose_engine(_spec(engine="inprocess"), _shards(10**9)) == "inprocess"


def test_in_process_needs_a_local_address():
    with pytest.raises(RecipeError, match="engine 'inprocess' runs in this process"):
        _spec(engine="inprocess", address="auto")
