"""Progress counters: what workers report and what the driver shows (pipelines.progress)."""

from __future__ import annotations

from pipelines import progress as P

STEPS = [("input", "input.read"), ("short", "filter.length"), ("dups", "dedup.exact")]


def _tally(reports) -> list[P.Counter]:
    tally = P.Tally()
    for r in reports:
        tally.add(*r)
    return tally.snapshot()


def test_tally_sums_batches_per_stage_and_keeps_their_time_span():
    counters = _tally([(1, "", 100, 90, 10.0, 11.0), (1, "", 50, 40, 10.5, 12.0),
                       (2, "hash", 90, None, 11.0, 11.5)])
    assert counters == [(1, "", P.ROWS, 150, 130, 2, 10.0, 12.0),
                        (2, "hash", P.ROWS, 90, None, 1, 11.0, 11.5)]
    assert P.wall_seconds(counters) == {1: 2.0, 2: 0.5}


def test_views_extrapolate_expected_input_and_give_an_eta():
    # 1,000 input rows; step 1 has seen 400 and kept 300 (75 %) in 2 s: step 2 expects 750.
    views = P.step_views(_tally([(0, "", 1000, 1000, 0.0, 1.0), (1, "", 400, 300, 1.0, 3.0),
                                 (2, "hash", 300, None, 1.5, 2.5)]), STEPS, 1000)
    by_step = {v.step: v for v in views}
    assert by_step[0].eta == 0.0 and by_step[0].rows_out == 1000
    short = by_step[1]
    assert (short.rows_in, short.rows_out, short.rate) == (400, 300, 200.0)
    assert short.eta == 3.0  # 600 rows left at 200 docs/s
    dups = by_step[2]
    assert dups.expected_in == 750 and dups.rows_out is None and dups.stage == "hash"
    assert P.format_line(short) == "step 1 short: 400 in, 300 out, 200 docs/s, ETA 0:03"
    assert P.format_line(dups).startswith("step 2 dups [hash]: 300 in, ? out, 300 docs/s")


def test_a_global_stage_on_side_records_shows_its_count_not_an_eta():
    views = P.step_views(_tally([(2, "hash", 300, None, 0.0, 1.0),
                                 (2, "groups", 120, None, 1.0, 2.0, P.RECORDS)]), STEPS, 1000)
    (dups,) = views
    assert (dups.stage, dups.unit, dups.stage_done, dups.rows_in) == ("groups", P.RECORDS,
                                                                       120, 300)
    assert dups.eta is None
    assert P.format_line(dups) == "step 2 dups [groups]: 120 records done, 300 rows in"


def test_unknown_input_size_means_no_eta_and_says_so():
    (view,) = P.step_views(_tally([(1, "", 10, 10, 0.0, 1.0)]), STEPS, None)
    assert view.eta is None and view.expected_in is None
    assert P.format_line(view).endswith("no ETA (input size unknown)")


def test_reports_go_to_the_sink_in_use_and_nowhere_without_one():
    tally = P.Tally()
    with P.use(tally.add):
        P.report(3, "decide", 5, 4, 1.0, 2.0)
    P.report(3, "decide", 7, 7, 2.0, 3.0)  # no run listening: dropped, not an error
    assert tally.snapshot() == [(3, "decide", P.ROWS, 5, 4, 1, 1.0, 2.0)]


def test_clock():
    assert [P.clock(s) for s in (None, 0, 59.6, 61, 3725)] == ["?", "0:00", "1:00", "1:01",
                                                              "1:02:05"]


def test_an_in_process_run_reports_every_step_while_it_works(tmp_path):
    from curate.recipe import parse_recipe
    from pipelines.runner import run
    from tests.conftest import write_parquet

    for s in range(2):
        write_parquet(tmp_path / "in" / f"p{s}.parquet",
                      [{"id": f"{s}-{i}", "text": f"text {i % 50} of shard {s}" + " w" * (i % 9)}
                       for i in range(300)])
    text = (f"name: t\ninput: {{path: '{tmp_path}/in/*.parquet', batch_rows: 50}}\n"
            f"output: {{path: '{tmp_path}/out'}}\nexecution: {{engine: inprocess}}\n"
            "steps:\n  - op: filter.length\n    params: {min_words: 5}\n  - op: dedup.exact\n")
    loaded = parse_recipe(text)
    seen: list[P.RunProgress] = []
    result = run(loaded.recipe.run_spec(text), loaded.operators, progress=seen.append,
                 interval=0.01)
    final = {v.step: v for v in seen[-1].steps}
    ops = {r["step"]: r for r in result.ops}
    assert sorted(final) == [0, 1, 2] == sorted(result.wall)
    for step, view in final.items():  # the last update agrees with the funnel
        assert (view.rows_in, view.rows_out) == (ops[step]["rows_in"], ops[step]["rows_out"])
    assert final[2].stage == "decide" and seen[-1].shards_done == 2
    assert all(w >= 0 for w in result.wall.values())


def test_a_global_steps_output_fraction_comes_from_its_last_stage():
    # dedup saw 1,000 rows in `hash` but its `decide` stage only 200 so far, keeping 100:
    # the next step expects half of 1,000, not 100/1,000 of it.
    steps = [*STEPS, ("after", "filter.length")]
    views = P.step_views(_tally([(0, "", 1000, 1000, 0.0, 1.0), (1, "", 1000, 1000, 0.0, 1.0),
                                 (2, "hash", 1000, None, 0.0, 1.0),
                                 (2, "decide", 200, 100, 1.0, 2.0),
                                 (3, "", 50, 50, 1.5, 2.0)]), steps, 1000)
    assert [v.expected_in for v in views] == [1000, 1000, 1000, 500]
    assert views[2].rows_out == 100 and views[2].rows_in == 1000


def test_a_global_operators_stages_report_under_their_names(tmp_path):
    from curate.recipe import parse_recipe
    from pipelines import inprocess
    from pipelines.shards import discover
    from tests.conftest import write_parquet
    from tests.toy_operators import ToyClusters, ToyParams

    write_parquet(tmp_path / "p.parquet", [{"id": str(i), "text": "x" * (1 + i % 40)}
                                           for i in range(400)])
    loaded = parse_recipe(f"name: t\ninput: {{path: '{tmp_path}/p.parquet'}}\n"
                          f"output: {{path: '{tmp_path}/out'}}\nsteps:\n  - op: filter.length\n")
    toy = ToyClusters(ToyParams(k=3, sample=50, per_group=4), loaded.recipe.context())
    shards = discover(f"{tmp_path}/p.parquet", "auto", "text", "id")
    tally = P.Tally()
    with P.use(tally.add):
        batches = inprocess.read_shards(shards, "text", "id", 1 << 20, 100)
        out = inprocess.run_operators(batches, [toy])
    counted = {(c[0], c[1]): c for c in tally.snapshot()}
    assert counted[(1, "centroids")][2:4] == (P.SAMPLE, 50)
    assert counted[(1, "assign")][2:5] == (P.ROWS, 400, None)  # not the last stage: no out
    assert counted[(1, "within")][2:4] == (P.ROWS, 400)
    assert counted[(1, "within/groups")][2] == P.RECORDS
    kept = sum(b["_drop_step"].null_count for b in out)
    assert counted[(1, "decide")][2:5] == (P.ROWS, 400, kept)
    (view,) = [v for v in P.step_views(tally.snapshot(), [("input", "input.read"),
                                                         ("toy", toy.name)], 400) if v.step]
    assert (view.rows_in, view.rows_out, view.stage) == (400, kept, "decide")
