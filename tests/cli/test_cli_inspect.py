"""`curate inspect` and `curate explain` through the real entry point."""

from __future__ import annotations

import random

import pytest

from curate import stats
from tests.cli.test_cli import curate
from tests.conftest import write_parquet


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory):
    out = tmp_path_factory.mktemp("quickstart") / "out"
    res = curate("run", "recipes/quickstart.yaml", "--output", str(out))
    assert res.returncode == 0, res.stderr
    return out


def _removed(out, step: int) -> list[dict]:
    return stats.query(out, f"SELECT id, text, detail FROM removed WHERE step = {step} "
                            "ORDER BY reason, id").to_pylist()


def test_inspect_shows_dropped_texts_with_the_failing_rule(quickstart):
    res = curate("inspect", str(quickstart), "--step", "not-too-short", "-n", "3")
    assert res.returncode == 0, res.stderr
    removed = _removed(quickstart, 2)[:3]
    assert "step 2 not-too-short (filter.length)" in res.stdout
    assert "3 document(s) dropped" in res.stdout
    for row in removed:
        assert row["id"] in res.stdout
        words = row["detail"].split()[0].split("=")[1]  # detail: "words=6 < min_words=20"
        assert f"too_short: words = {words} < min_words = 20" in res.stdout
        first_line = row["text"].splitlines()[0]
        assert first_line in res.stdout
    # the step can also be given by number, and a reason it never gave is refused
    assert curate("inspect", str(quickstart), "--step", "2", "-n", "1").stdout.count("too_short")
    bad = curate("inspect", str(quickstart), "--step", "2", "--reason", "too_long")
    assert bad.returncode == 2 and "dropped no rows for 'too_long'" in bad.stderr
    assert "too_short (" in bad.stderr


def test_inspect_kept_rows_come_from_the_output_with_the_steps_signals(quickstart):
    res = curate("inspect", str(quickstart), "--step", "2", "--kept", "-n", "2")
    assert res.returncode == 0, res.stderr
    first = stats.query(quickstart, "SELECT id, num FROM signals WHERE step = 2 AND key = "
                                    "'words' ORDER BY id").to_pylist()
    assert "2 document(s) kept" in res.stdout and res.stdout.count("words=") == 2
    shown = [r for r in first if r["id"] in res.stdout]
    assert len(shown) == 2
    for r in shown:
        assert f"words={r['num']:.4g}" in res.stdout


def test_inspect_errors_name_the_steps_and_how_to_keep_texts(quickstart, tmp_path):
    unknown = curate("inspect", str(quickstart), "--step", "filter.lenth")
    assert unknown.returncode == 2
    assert "not a step of run" in unknown.stderr and "2 not-too-short (filter.length)" in (
        unknown.stderr)
    nothing = curate("inspect", str(quickstart), "--step", "dedup.exact")
    assert nothing.returncode == 2 and "dropped no rows" in nothing.stderr
    out = tmp_path / "none"
    res = curate("run", "recipes/quickstart.yaml", "--output", str(out),
                 "--set", "output.keep_removed=none")
    assert res.returncode == 0, res.stderr
    none = curate("inspect", str(out), "--step", "2")
    assert none.returncode == 2 and "kept none of their texts" in none.stderr
    assert "output.keep_removed: all" in none.stderr
    empty = curate("inspect", str(tmp_path / "nowhere"), "--step", "1")
    assert empty.returncode == 2 and "holds no published curate run" in empty.stderr


def test_explain_tells_a_dropped_and_a_kept_rows_story(quickstart):
    (gone,) = _removed(quickstart, 2)[:1]
    res = curate("explain", str(quickstart), gone["id"])
    assert res.returncode == 0, res.stderr
    assert f"{gone['id']} in run" in res.stdout and "dropped at step 2: too_short" in res.stdout
    lines = {ln.split()[0]: ln for ln in res.stdout.splitlines() if ln[:1].isdigit()}
    assert "kept" in lines["1"] and "dropped: too_short" in lines["2"]
    assert "not reached" in lines["3"]
    kept_id = stats.query(quickstart, "SELECT id FROM signals WHERE step = 3 AND id NOT IN "
                                      "(SELECT id FROM dropped) ORDER BY id LIMIT 1")["id"][0]
    kept = curate("explain", str(quickstart), kept_id.as_py())
    assert kept.returncode == 0 and "kept (in the output)" in kept.stdout
    missing = curate("explain", str(quickstart), "no-such-id")
    assert missing.returncode == 2 and "'no-such-id' is not in run" in missing.stderr


WORDS = [f"w{i}" for i in range(5000)]


def _filler(i: int) -> str:
    rng = random.Random(i)
    return " ".join(rng.choice(WORDS) for _ in range(40))


MINHASH = """\
name: chain
input: {{path: "{input}", text_column: text, id_column: id}}
output: {{path: "{output}"}}
steps:
  - op: dedup.exact
  - op: dedup.minhash
    name: near
    params: {{threshold: 0.8}}
"""


@pytest.fixture(scope="module")
def minhash_run(tmp_path_factory):
    """A copy of a near-duplicate: the copy is dropped by dedup.exact for the original,
    the original by dedup.minhash for a longer text (its component's keeper)."""
    root = tmp_path_factory.mktemp("chain")
    base = " ".join(f"word{i}" for i in range(60))
    rows = [{"id": "original", "text": base},
            {"id": "longer", "text": base + " and three more"},
            {"id": "copy", "text": base}]
    rows += [{"id": f"f{i}", "text": _filler(i)} for i in range(30)]
    write_parquet(root / "in" / "part-0.parquet", rows)
    recipe = root / "chain.yaml"
    recipe.write_text(MINHASH.format(input=root / "in" / "*.parquet", output=root / "out"))
    res = curate("run", str(recipe))
    assert res.returncode == 0, res.stderr
    return root / "out"


def test_explain_follows_the_duplicate_chain_to_the_kept_row(minhash_run):
    res = curate("explain", str(minhash_run), "copy")
    assert res.returncode == 0, res.stderr
    assert "dropped at step 1: exact_duplicate" in res.stdout
    assert "duplicate of original (dropped at step 2: near_duplicate)" in res.stdout
    assert "duplicate of longer (kept)" in res.stdout
    assert "the chain ends at longer, kept in the output:" in res.stdout
    assert "and three more" in res.stdout  # the kept row's excerpt
    near = curate("explain", str(minhash_run), "original")
    assert "component longer (2 rows: also longer)" in near.stdout


def test_inspect_a_near_duplicate_shows_its_kept_row_and_shared_text(minhash_run):
    res = curate("inspect", str(minhash_run), "--step", "near")
    assert res.returncode == 0, res.stderr
    assert "original" in res.stdout and "near_duplicate" in res.stdout
    assert "duplicate of longer; highlighted: the" in res.stdout
    assert "kept row longer:" in res.stdout and "and three more" in res.stdout
