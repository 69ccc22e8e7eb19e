"""decontam.ngram through the real CLI: a bad benchmark file at `curate validate`, a run,
then `curate contamination` and the `contamination` / `benchmark_items` stats views."""

from __future__ import annotations

import csv
import io

from tests.cli.test_cli import curate
from tests.conftest import write_parquet
from tests.unit.test_decontam_ngram_op import FILLER, write_planted


def _recipe(tmp_path, bench: str, corpus: str, action: str = "drop") -> str:
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"name: t\ninput: {{path: '{corpus}'}}\n"
                      f"output: {{path: '{tmp_path}/out'}}\nsteps:\n"
                      "  - op: filter.length\n"
                      "  - op: decontam.ngram\n    name: decon\n"
                      f"    params: {{benchmarks: ['{bench}'], text_columns: [question, answer], "
                      f"action: {action}}}\n")
    return str(recipe)


def test_validate_names_the_bad_benchmark_file_and_row(tmp_path):
    write_parquet(tmp_path / "in" / "a.parquet", [{"id": "a", "text": "hello"}])
    bench = write_parquet(tmp_path / "b" / "gsm.parquet", [
        {"id": "q1", "question": "What is two plus two?", "answer": "4"},
        {"id": "q2", "question": None, "answer": ""}])
    res = curate("validate", _recipe(tmp_path, str(bench), f"{tmp_path}/in/*.parquet"))
    assert res.returncode == 2, res.stderr
    assert (f"r.yaml:6: step 'decon' (steps[1]): {bench} row 1: item 'q2' has no text "
            "(columns question, answer are null or empty)") in res.stderr.replace("\n  ", " ")
    res = curate("validate", _recipe(tmp_path, f"{tmp_path}/nothing/*.jsonl",
                                     f"{tmp_path}/in/*.parquet"))
    assert res.returncode == 2 and "nothing/*.jsonl' matches no file" in res.stderr


def test_run_then_contamination_lists_leaked_and_clean_items(tmp_path):
    bench, corpus = write_planted(tmp_path)
    res = curate("run", _recipe(tmp_path, bench, corpus))
    assert res.returncode == 0, res.stderr
    out = str(tmp_path / "out")
    res = curate("contamination", out, "--format", "csv")
    assert res.returncode == 0, res.stderr
    rows = {r["item_id"]: r for r in csv.DictReader(io.StringIO(res.stdout))}
    assert {k: (r["leaked"], r["rows"], r["methods"]) for k, r in rows.items()} == {
        "q0": ("True", "1", "ngram"), "q1": ("True", "1", "ngram"), "q2": ("False", "0", "")}
    assert rows["q0"]["scores"] == "ngram=1.0" and rows["q0"]["recipe"] == "t"
    res = curate("contamination", out, "--by", "benchmark", "--format", "json")
    assert res.returncode == 0, res.stderr
    assert '"benchmark": "gsm", "items": 3, "items_leaked": 2, "rows_flagged": 2' in res.stdout
    res = curate("contamination", out, "--items", "leaked")
    assert res.returncode == 0 and "q0" in res.stdout and "q2" not in res.stdout
    res = curate("stats", out, "SELECT id, matched_id, span_start, dropped FROM contamination "
                 "ORDER BY id", "--format", "csv")
    assert res.returncode == 0, res.stderr
    # p0: the item after the filler; p1: from the first 7-gram left intact by the drops
    # ("at" before "9 am" is dropped, so the first intact gram starts at "9").
    assert res.stdout.splitlines()[1:] == [f"p0,q0,{len(FILLER)},True",
                                           f"p1,q1,{len('A train leaves Oslo ')},True"]
    # A file under OUT that looks like an items table but is not one is left out.
    run_dir = next((tmp_path / "out" / "_curate" / "runs").iterdir())
    write_parquet(run_dir / "fitted" / "step-009-items.table.parquet", [{"x": 1}])
    res = curate("stats", out, "SELECT step, count(*) FROM benchmark_items GROUP BY 1",
                 "--format", "csv")
    assert res.returncode == 0 and res.stdout.splitlines()[1:] == ["2,3"], res.stderr


def test_two_decontam_steps_count_each_row_once(tmp_path):
    bench, corpus = write_planted(tmp_path)
    recipe = tmp_path / "two.yaml"
    params = f"benchmarks: ['{bench}'], text_columns: [question, answer]"
    recipe.write_text(f"name: two\ninput: {{path: '{corpus}'}}\n"
                      f"output: {{path: '{tmp_path}/out'}}\nsteps:\n"
                      f"  - op: decontam.ngram\n    name: exact\n"
                      f"    params: {{{params}, action: annotate}}\n"
                      f"  - op: decontam.ngram\n    name: sketch\n"
                      f"    params: {{{params}, index: bloom}}\n")
    assert curate("run", str(recipe)).returncode == 0
    res = curate("contamination", str(tmp_path / "out"), "--by", "benchmark", "-f", "csv")
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[1] == "two,gsm,3,2,2,2,\"bloom,ngram\",\"exact,sketch\""
    res = curate("contamination", str(tmp_path / "out"), "--items", "leaked", "-f", "csv")
    lines = res.stdout.splitlines()
    assert lines[1] == "two,gsm,q0,True,1,ngram,ngram=1.0" and len(lines) == 3
    assert lines[2].startswith("two,gsm,q1,True,1,ngram,ngram=0.")  # words dropped


def test_annotate_keeps_rows_and_contamination_says_not_dropped(tmp_path):
    bench, corpus = write_planted(tmp_path)
    assert curate("run", _recipe(tmp_path, bench, corpus, "annotate")).returncode == 0
    res = curate("stats", str(tmp_path / "out"), "SELECT count(*) FILTER (WHERE dropped), "
                 "count(*) FROM contamination", "--format", "csv")
    assert res.stdout.splitlines()[1] == "0,2"


def test_contamination_without_decontam_steps_or_runs_fails_clearly(tmp_path):
    res = curate("contamination", str(tmp_path))
    assert res.returncode == 2 and "holds no curate runs" in res.stderr
    write_parquet(tmp_path / "in" / "a.parquet", [{"id": "a", "text": "hello world"}])
    recipe = tmp_path / "plain.yaml"
    recipe.write_text(f"name: p\ninput: {{path: '{tmp_path}/in/*.parquet'}}\n"
                      f"output: {{path: '{tmp_path}/out'}}\nsteps:\n  - op: filter.length\n")
    assert curate("run", str(recipe)).returncode == 0
    res = curate("contamination", str(tmp_path / "out"))
    assert res.returncode == 1 and "no decontam.* step" in res.stderr


def test_report_shows_the_contamination_section_escaped(tmp_path):
    bench, corpus = write_planted(tmp_path)
    hostile = tmp_path / "bench" / "hostile.parquet"
    write_parquet(hostile, [{"id": "<script>alert(1)</script>", "benchmark": "<b>gsm</b>",
                             "question": "Mia bakes 24 cookies and gives a third of them to "
                             "her neighbour Rosa. How many cookies does Mia have left?",
                             "answer": None}])
    recipe = _recipe(tmp_path, str(hostile), corpus)
    assert curate("run", recipe).returncode == 0
    res = curate("report", str(tmp_path / "out"), "--to", str(tmp_path / "r.html"))
    assert res.returncode == 0, res.stderr
    html = (tmp_path / "r.html").read_text()
    section = html[html.index("<h2 id='contamination'>"):]
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in section
    assert "&lt;b&gt;gsm&lt;/b&gt;</td><td class=\"n\">1</td><td class=\"n\">1</td>" in section
