"""`curate report` through the real entry point: where it writes, what it refuses."""

from __future__ import annotations

import json
import re

import pytest

from tests.cli.test_cli import curate
from tests.conftest import write_parquet

RECIPE = """\
name: report-cli
input: {{path: "{input}", text_column: text, id_column: id}}
output: {{path: "{out}", rows_per_shard: 100}}
execution: {{engine: inprocess}}
steps:
  - op: filter.length
    name: long-enough
    params: {{min_words: 3}}
  - op: dedup.exact
"""


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """OUT holding two succeeded runs of one recipe (the second with a stricter filter)."""
    root = tmp_path_factory.mktemp("report-cli")
    rows = [{"id": f"d{i}", "text": f"document number {i} has some words"} for i in range(20)]
    rows += [{"id": f"dup{i}", "text": "the very same text again"} for i in range(5)]
    rows += [{"id": f"short{i}", "text": "too short"} for i in range(4)]
    write_parquet(root / "in" / "a.parquet", rows)
    recipe = root / "r.yaml"
    recipe.write_text(RECIPE.format(input=root / "in" / "*.parquet", out=root / "out"))
    ids = []
    for sets in ([], ["--set", "steps.long-enough.params.min_words=6"]):
        res = curate("run", str(recipe), *sets)
        assert res.returncode == 0, res.stderr
        ids.append(re.search(r"run (\S+) ->", res.stdout).group(1))
    return root, recipe, ids


def test_default_report_goes_under_curates_folder_and_the_next_run_still_works(two_runs):
    root, recipe, ids = two_runs
    out = root / "out"
    res = curate("report", str(out))
    assert res.returncode == 0, res.stderr
    path = out / "_curate" / "runs" / ids[1] / "report.html"
    assert str(path) in res.stdout.replace("\n", "")
    html = path.read_text()
    assert ids[1] in html and "long-enough" in html
    assert curate("report", str(out)).returncode == 0  # curate's own file: regenerated
    rerun = curate("run", str(recipe))  # a report in OUT/_curate never blocks a run
    assert rerun.returncode == 0, rerun.stderr


def test_run_option_reports_an_older_run(two_runs, tmp_path):
    root, _, ids = two_runs
    target = tmp_path / "old.html"
    res = curate("report", str(root / "out"), "--run", ids[0], "--to", str(target))
    assert res.returncode == 0, res.stderr
    funnel = re.search(r"id='funnel-table'.*?</table>", target.read_text(), re.S).group(0)
    dropped = [int(v) for v in re.findall(r'data-field="rows_dropped" data-value="(\d+)"',
                                          funnel)]
    stats = curate("stats", str(root / "out"), "SELECT rows_dropped FROM all_ops WHERE "
                   f"run_id = '{ids[0]}' ORDER BY step", "--format", "json")
    assert dropped == [r["rows_dropped"] for r in json.loads(stats.stdout)] == [0, 4, 4]


def test_compare_shows_both_runs_per_step(two_runs, tmp_path):
    root, _, ids = two_runs
    target = tmp_path / "cmp.html"
    res = curate("report", str(root / "out"), "--compare", ids[0], ids[1], "--to", str(target))
    assert res.returncode == 0, res.stderr
    html = target.read_text()
    assert ids[0] in html and ids[1] in html and "class='compare'" in html
    # min_words 3 -> 6 also drops the 5 five-word copies (the six-word documents stay)
    row = re.search(r"<tr><td class=\"\">long-enough</td>.*?</tr>", html).group(0)
    cells = re.findall(r'<td class="n">(.*?)</td>', row)
    assert cells[6:9] == ["4", "9", "<span class='up'>+5</span>"]
    assert "min_words: 3 → 6" in row  # what changed in the step's recipe


def test_unknown_run_is_refused_naming_the_known_ones(two_runs):
    root, _, ids = two_runs
    res = curate("report", str(root / "out"), "--run", "20990101T000000Z-nope")
    assert res.returncode == 2
    assert "no run 20990101T000000Z-nope" in res.stderr and ids[1] in res.stderr


def test_folder_that_is_not_a_curate_output_is_refused(tmp_path):
    (tmp_path / "plain").mkdir()
    res = curate("report", str(tmp_path / "plain"))
    assert res.returncode == 2
    assert "is not a curate output folder" in res.stderr


def test_existing_to_file_is_kept_unless_overwrite(two_runs, tmp_path):
    root, _, _ = two_runs
    target = tmp_path / "mine.html"
    target.write_text("my notes")
    res = curate("report", str(root / "out"), "--to", str(target))
    assert res.returncode == 2 and "exists; give --overwrite" in res.stderr
    assert target.read_text() == "my notes"
    res = curate("report", str(root / "out"), "--to", str(target), "--overwrite")
    assert res.returncode == 0, res.stderr
    assert target.read_text().startswith("<!DOCTYPE html>")


def test_to_inside_out_is_refused(two_runs):
    root, _, _ = two_runs
    for inside in (root / "out" / "report.html", root / "out" / "_curate" / "r.html"):
        res = curate("report", str(root / "out"), "--to", str(inside))
        assert res.returncode == 2, res.stdout
        assert not inside.exists()


def test_run_and_compare_together_are_refused(two_runs):
    root, _, ids = two_runs
    res = curate("report", str(root / "out"), "--run", ids[0], "--compare", ids[0], ids[1])
    assert res.returncode == 2 and "not both" in res.stderr


def test_step_names_and_texts_are_escaped(tmp_path):
    name = "<script>alert('step')</script>"
    rows = [{"id": "<b>x</b>", "text": "<img src=x onerror=alert(1)> " * 3},
            {"id": "y", "text": "<img src=x onerror=alert(1)> " * 3}]
    write_parquet(tmp_path / "in" / "a.parquet", rows)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(RECIPE.format(input=tmp_path / "in" / "*.parquet", out=tmp_path / "out")
                      .replace("name: long-enough", f"name: {json.dumps(name)}"))
    assert curate("run", str(recipe)).returncode == 0
    res = curate("report", str(tmp_path / "out"), "--to", str(tmp_path / "r.html"))
    assert res.returncode == 0, res.stderr
    html = (tmp_path / "r.html").read_text()
    assert "<script" not in html and "<img" not in html and "<b>x" not in html
    assert "&lt;script&gt;alert(&#x27;step&#x27;)&lt;/script&gt;" in html
    assert "&lt;b&gt;x&lt;/b&gt;" in html  # the duplicate cluster's kept id
