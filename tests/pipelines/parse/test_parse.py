"""The `parse` stage: facts on both sides and every filter with its reason."""

from __future__ import annotations

import pytest

from schemas import Candidate
from tests.support.stage_fixtures import candidate

GOOD_BEFORE = "def area(w, h):\n    return w * h\n"
GOOD_AFTER = "def area(w, h):\n    # width times height\n    return abs(w) * abs(h)\n"


def test_every_parse_filter_has_its_reason(run_stage):
    long_code = "def f():\n" + "    x = 1\n" * 400
    records = [
        candidate("kept", GOOD_AFTER, GOOD_BEFORE),
        candidate("empty", "   \n", GOOD_BEFORE),
        candidate("identical", GOOD_BEFORE, GOOD_BEFORE),
        candidate("normalised", "def area(w, h):\n    # the area\n    return   w * h\n", GOOD_BEFORE),
        candidate("broken", "def area(w, h:\n    return w *\n))) ((( ]]\n", GOOD_BEFORE),
        candidate("shallow", "pass\n", "pass  # for now\n"),
        candidate("long", long_code, GOOD_BEFORE),
        candidate("mismatch", "class Area { int area(int w, int h) throws Exception { return w * h; } }\n", GOOD_BEFORE),
        candidate("cobol", GOOD_AFTER, GOOD_BEFORE, language="COBOL"),
        candidate("c_macro", "#define AREA(w, h) ((w) * (h))\nint area(int w, int h) { return AREA(w, h); }\n",
                  "int area(int w, int h) { return w * h; }\n", language="C"),
    ]
    result = run_stage("parse", {"max_lines": 300}, upstream={"synthesize": (records, Candidate)})
    kept, drops, manifest = result
    assert set(kept) == {"kept", "c_macro"}
    assert drops == {
        "empty": "empty_side",
        "identical": "identical_sides",
        "normalised": "identical_after_normalisation",
        "broken": "error_share_above_threshold",
        "shallow": "too_shallow",
        "long": "too_long",
        "mismatch": "language_mismatch",
        "cobol": "unknown_language",
    }
    assert result.details["mismatch"].startswith("chosen parses as ") and result.details["mismatch"].endswith("the pair is Python")
    assert manifest.records_in == 10 and manifest.records_out == 2
    assert sum(manifest.dropped.values()) == 8

    facts = kept["kept"]["chosen_facts"]
    assert facts["parse_ok"] and not facts["has_error"] and facts["functions"] == 1 and facts["depth"] >= 3
    assert len(facts["comment_spans"]) == 2  # one comment: [start, end]
    start, end = facts["comment_spans"]
    assert GOOD_AFTER.encode()[start:end] == b"# width times height"
    assert kept["kept"]["rejected_facts"]["comment_spans"] == []


def test_error_share_threshold_is_per_language(run_stage):
    flaky = "int area(int w, int h) { return w * h; }\nint oops( { }\n"
    upstream = {"synthesize": ([candidate("c", flaky, "int area(int w, int h) { return w + h; }\n", language="C")], Candidate)}
    _, drops, _ = run_stage("parse", {}, upstream=upstream)
    assert drops["c"] == "error_share_above_threshold"
    kept, _, _ = run_stage("parse", {"max_error_share": {"default": 0.05, "C": 0.5}}, upstream=upstream)
    assert set(kept) == {"c"}


def test_unknown_language_in_thresholds_is_a_config_error(run_stage):
    from pipelines.run.config import ConfigError

    with pytest.raises(ConfigError, match="unknown languages \\['Klingon'\\]"):
        run_stage("parse", {"max_error_share": {"Klingon": 0.1}},
                  upstream={"synthesize": ([candidate("a", GOOD_AFTER, GOOD_BEFORE)], Candidate)})
