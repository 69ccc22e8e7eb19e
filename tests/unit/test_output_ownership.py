"""Output ownership without Ray: the manifest, publishing, and the preflight refusals."""

from __future__ import annotations

import json

import pytest

from pipelines.errors import OutputError
from pipelines.preflight import check, foreign_files, glob_regex
from pipelines.publish import finish_publish, owned_files, publish


def _staged(run_dir, names):
    staging = run_dir / "staging"
    staging.mkdir(parents=True)
    for name in names:
        (staging / name).write_text(f"new {name}")
    return staging


def test_publish_replaces_only_files_in_the_manifest(tmp_path):
    out = tmp_path / "out"
    (out / "_curate").mkdir(parents=True)
    (out / "part-00000-0000.parquet").write_text("old")
    (out / "part-00001-0000.parquet").write_text("old, gone in the new run")
    (out / "_curate" / "manifest.json").write_text(json.dumps(
        {"run_id": "r1", "files": ["part-00000-0000.parquet", "part-00001-0000.parquet"]}))
    (out / "part-important.parquet").write_text("the user's")  # appeared after run r1
    publish(_staged(out / "_curate" / "runs" / "r2", ["part-00000-0000.parquet"]), out, "r2")
    assert (out / "part-00000-0000.parquet").read_text() == "new part-00000-0000.parquet"
    assert not (out / "part-00001-0000.parquet").exists()
    assert (out / "part-important.parquet").read_text() == "the user's"
    assert owned_files(out) == {"part-00000-0000.parquet"}


def test_publish_refuses_to_overwrite_a_file_it_did_not_write(tmp_path):
    out = tmp_path / "out"
    (out / "_curate").mkdir(parents=True)
    (out / "part-00000-0000.parquet").write_text("the user's")
    staging = _staged(out / "_curate" / "runs" / "r1", ["part-00000-0000.parquet"])
    with pytest.raises(OutputError, match="not written by curate"):
        publish(staging, out, "r1")
    assert (out / "part-00000-0000.parquet").read_text() == "the user's"


def test_an_interrupted_publish_resumes_after_partial_moves(tmp_path):
    out = tmp_path / "out"
    (out / "_curate").mkdir(parents=True)
    names = ["part-00000-0000.parquet", "part-00001-0000.parquet"]
    staging = _staged(out / "_curate" / "runs" / "r1", names)
    (out / "_curate" / "publishing").write_text(
        json.dumps({"staging": str(staging), "run_id": "r1", "files": names}))
    (staging / names[0]).rename(out / names[0])  # died after the first move
    finish_publish(out)
    assert sorted(p.name for p in out.glob("part-*")) == names
    assert owned_files(out) == set(names)


def test_damaged_manifest_is_an_error_not_a_guess(tmp_path):
    (tmp_path / "_curate").mkdir()
    (tmp_path / "_curate" / "manifest.json").write_text("{not json")
    with pytest.raises(OutputError, match="damaged"):
        owned_files(tmp_path)


@pytest.mark.parametrize(("pattern", "path", "matches"), [
    ("/a/*.parquet", "/a/x.parquet", True),
    ("/a/*.parquet", "/a/b/x.parquet", False),
    ("/a/**/*.parquet", "/a/x.parquet", True),
    ("/a/**/*.parquet", "/a/b/c/x.parquet", True),
    ("/a/part-?.pq", "/a/part-1.pq", True),
    ("/a/[ab].pq", "/a/b.pq", True),
    ("/a/[!ab].pq", "/a/b.pq", False),
    ("/a/**", "/a/b/c", True),
    ("/b/**", "/a/b", False),
    ("/a/x[.pq", "/a/x[.pq", True),
])
def test_glob_regex_follows_recursive_glob(pattern, path, matches):
    assert bool(glob_regex(pattern).match(path)) is matches


def _input(tmp_path, name="in"):
    folder = tmp_path / name
    folder.mkdir()
    shard = folder / "a.parquet"
    shard.write_text("x")
    return folder, [str(shard)]


def test_output_equal_to_input_folder_is_refused(tmp_path):
    folder, shards = _input(tmp_path)
    with pytest.raises(OutputError, match="contains input shards"):
        check(f"{folder}/*.parquet", shards, folder)


def test_input_glob_that_would_read_curates_output_is_refused(tmp_path):
    folder, shards = _input(tmp_path)
    with pytest.raises(OutputError, match="would also match files curate writes"):
        check(f"{folder}/**/*.parquet", shards, folder / "out")


def test_input_inside_a_curate_folder_is_refused(tmp_path):
    shard = tmp_path / "old" / "_curate" / "runs" / "r" / "ops.parquet"
    shard.parent.mkdir(parents=True)
    shard.write_text("x")
    with pytest.raises(OutputError, match="internal files"):
        check(str(tmp_path / "old" / "_curate" / "runs" / "*" / "ops.parquet"), [str(shard)],
              tmp_path / "out")


def test_output_folder_with_foreign_files_is_refused_and_named(tmp_path):
    folder, shards = _input(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / "part-important.parquet").write_text("the user's")
    (out / "notes").mkdir()
    with pytest.raises(OutputError, match="notes, part-important.parquet"):
        check(f"{folder}/*.parquet", shards, out)
    assert foreign_files(out) == ["notes", "part-important.parquet"]


def test_sibling_output_and_curates_own_output_are_accepted(tmp_path):
    folder, shards = _input(tmp_path)
    out = folder / "out"  # beside the shards, which a non-recursive glob cannot reach
    check(f"{folder}/*.parquet", shards, out)
    (out / "_curate").mkdir(parents=True)
    (out / "part-00000-0000.parquet").write_text("ours")
    (out / "_curate" / "manifest.json").write_text(
        json.dumps({"run_id": "r", "files": ["part-00000-0000.parquet"]}))
    check(f"{folder}/*.parquet", shards, out)
