"""The contamination benchmark's own pieces (benchmarks/contamination_*.py): the GPT-3 13-gram
rule, the plant/cut/rename edits of the dev set, and the metrics, on hand-made inputs."""

from __future__ import annotations

import ast
import random
import sys
import textwrap
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import contamination as bench  # noqa: E402
import contamination_devset as devset  # noqa: E402
import contamination_gpt3 as gpt3  # noqa: E402

ITEM = ("Natalia sold clips to 48 of her friends in April, and then she sold half as many "
        "clips in May. How many clips did Natalia sell altogether in April and May?")


def test_gpt3_words_lowercase_and_strip_punctuation() -> None:
    assert gpt3.words("Hello, World! It's 3.5-ish.") == ["hello", "world", "its", "35ish"]


def test_gpt3_one_shared_13gram_is_dirty_12_words_are_not() -> None:
    index = gpt3.build_index([ITEM, "an unrelated item about ducks and eggs " * 3], 13)
    w = ITEM.split()
    thirteen = "Some text. " + " ".join(w[5:18]).upper() + " more text"
    twelve = "Some text. " + " ".join(w[5:17]) + " more text"
    assert [(d, i) for d, i, _ in gpt3.scan([thirteen, twelve, ITEM], index, 13)] == [
        (0, 0), (2, 0)]
    # Short items (< 13 words) have no 13-gram and never match (lm-eval's rule).
    assert gpt3.build_index(["too short to match"], 13) == {}


def test_gpt3_reports_the_item_sharing_most_grams() -> None:
    other = " ".join(ITEM.split()[:14]) + " completely different ending for this other item"
    index = gpt3.build_index([other, ITEM], 13)
    [(doc, item, count)] = gpt3.scan(["x " + ITEM], index, 13)
    # A gram belongs to the first item holding it: the 2 grams `other` shares count for it.
    assert (doc, item) == (0, 1) and count == len(ITEM.split()) - 12 - 2


def test_plant_inserts_a_paragraph_and_returns_its_span() -> None:
    host = "first para\n\nsecond para\n\nthird"
    for seed in range(10):
        text, s, e = devset.plant(host, "PLANT", random.Random(seed))
        assert text[s:e] == "PLANT"
        assert text.replace("PLANT\n\n", "").replace("\n\nPLANT", "") == host


def test_half_cuts_at_the_middle_word() -> None:
    assert devset.half("a b c d e f") == "a b c"
    assert devset.half("one") == "one"


def test_light_edit_is_seeded_and_names_its_ops() -> None:
    a = devset.light_edit(ITEM, random.Random(3))
    assert a == devset.light_edit(ITEM, random.Random(3))
    assert a[1] and set(a[1].split(",")) <= {"shuffle", "shuffle(noop)", "drop", "case_ws:lower",
                                             "case_ws:upper", "case_ws:ws"}


def test_rename_renames_own_names_not_attributes_and_drops_the_docstring(tmp_path) -> None:
    src = textwrap.dedent('''\
        def area(self, width, height=2):
            """Area of a box."""
            total = width * height
            self.total = total
            return max(total, self.width)
        ''')
    (tmp_path / "m.py").write_text(src)
    [fn] = devset.functions(tmp_path / "m.py", "m", (1, 100))
    assert fn["prompt"].endswith('"""Area of a box."""') and fn["has_doc"]
    out = devset.rename(fn, random.Random(0))
    ast.parse(out)  # still Python
    assert "Area of a box" not in out and "def area" not in out
    assert "self.total" in out and "self.width" in out and "max(" in out
    tree = ast.parse(out).body[0]
    own = {a.arg for a in tree.args.args} | {n.id for n in ast.walk(tree)
                                              if isinstance(n, ast.Name)}
    assert own.isdisjoint({"area", "width", "height", "total"})
    assert "self" in own and "max" in own  # self and builtins keep their names


def test_score_counts_kinds_attribution_near_misses_and_clean() -> None:
    truth = [
        {"id": "a", "role": "leak", "kind": "verbatim", "bench_id": "x"},
        {"id": "b", "role": "leak", "kind": "verbatim", "bench_id": "y"},
        {"id": "c", "role": "near_miss", "kind": "near_verbatim", "bench_id": "z"},
        {"id": "d", "role": "clean", "kind": None, "bench_id": None},
        {"id": "e", "role": "clean", "kind": None, "bench_id": None},
    ]
    s = bench.score({"a": ("x", "g"), "c": ("x", "g"), "e": ("q", "g")}, truth)
    assert s["recall"]["verbatim"] == (1, 2)
    assert s["attribution"] == (1, 1)
    assert s["near_miss"]["near_verbatim"] == (1, 1) and s["near_miss_all"] == (1, 1)
    assert s["clean_fp"] == (1, 2) and s["clean_fp_ids"] == ["e"]


def test_copy_check_finds_near_copies_and_nesting_not_distinct_siblings() -> None:
    write = ("def write(self, data):\n    self._check_can_write()\n"
             "    length = self._compressor.compress(data)\n    self._pos += len(data)\n"
             "    return length\n")
    twin = write.replace("_compressor", "_lzma_compressor")   # the bz2/lzma pair
    inner = "def escape(c):\n    if c.isprintable():\n        return c\n    return repr(c)\n"
    outer = ("def helper(s):\n    " + inner.replace("\n", "\n    ").rstrip()
             + "\n    return ''.join(escape(c) for c in s)\n")
    other = ("def close(self):\n    try:\n        sock = self.sock\n    finally:\n"
             "        sock.shutdown()\n")
    universe = [{"module": "bz2", "text": write}, {"module": "ast", "text": inner},
                {"module": "ftplib", "text": other}]
    check = devset.CopyCheck(universe)
    assert check.is_copy({"module": "lzma", "text": twin})      # ratio ~0.97
    assert check.is_copy({"module": "ast", "text": outer})      # holds `inner` whole
    sibling = ("def read(self, size=-1):\n    self._check_can_read()\n"
               "    return self._buffer.read(size)\n")
    assert not check.is_copy({"module": "bz2", "text": sibling})
    # a function is not a copy of itself (the universe holds every candidate)
    assert not devset.CopyCheck(universe).is_copy({"module": "ftplib", "text": other})
