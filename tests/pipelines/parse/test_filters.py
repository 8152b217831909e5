"""The parse stage's filters, one at a time, on real parses; and the DoFn that runs them in order (TestPipeline)."""

from __future__ import annotations

import json

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline as BeamPipeline
from apache_beam.testing.util import assert_that, equal_to

from parsers import languages, parse
from pipelines.core import DROPPED
from pipelines.parse.filters import (
    FILTERS,
    DiffersInCode,
    KnownLanguage,
    MinDepth,
    ParsedPair,
    ParsesCleanly,
    SizeLimit,
    TwoSides,
)
from pipelines.parse.stage import Parse, ParseBothSides, ParseConfig
from schemas import to_row
from tests.support.stage_fixtures import candidate

AREA = "def area(w, h):\n    return w * h\n"
AREA_FIXED = "def area(w, h):\n    # width times height\n    return abs(w) * abs(h)\n"


@pytest.fixture(scope="module")
def registry():
    return languages()


def parsed(registry, chosen: str, rejected: str, language: str = "Python") -> ParsedPair:
    spec = registry[language]
    return ParsedPair(candidate("p", chosen, rejected, language=language), spec, parse(chosen, spec), parse(rejected, spec))


def reason_and_detail(rejection):
    return None if rejection is None else (rejection.reason, rejection.detail)


def test_two_sides_need_code_on_each_side_and_a_difference():
    check = TwoSides().check
    assert reason_and_detail(check(candidate("p", " \n", AREA))) == ("empty_side", "chosen")
    assert reason_and_detail(check(candidate("p", AREA, ""))) == ("empty_side", "rejected")
    assert reason_and_detail(check(candidate("p", AREA, AREA))) == ("identical_sides", "")
    assert check(candidate("p", AREA_FIXED, AREA)) is None


def test_the_language_must_be_registered(registry):
    check = KnownLanguage(registry).check
    assert reason_and_detail(check(candidate("p", AREA_FIXED, AREA, language="COBOL"))) == ("unknown_language", "COBOL")
    assert check(candidate("p", AREA_FIXED, AREA)) is None


def test_size_limit_names_the_side_and_the_measure(registry):
    long_code = "def f():\n" + "    x = 1\n" * 20
    assert reason_and_detail(SizeLimit(10_000, 10).check(parsed(registry, long_code, AREA))) == ("too_long", "chosen: 21 lines")
    assert reason_and_detail(SizeLimit(40, 100).check(parsed(registry, AREA, long_code))) == ("too_long", "rejected: 209 bytes")
    assert SizeLimit(10_000, 100).check(parsed(registry, AREA_FIXED, AREA)) is None


def test_a_broken_side_is_a_language_mismatch_when_another_grammar_takes_it(registry):
    check = ParsesCleanly(registry, {"default": 0.1}).check
    java = "class Area { int area(int w, int h) throws Exception { return w * h; } }\n"
    rejection = check(parsed(registry, java, AREA))
    assert rejection.reason == "language_mismatch" and rejection.fields["side"] == "chosen"
    assert rejection.detail == f"chosen parses as {rejection.fields['other']}, the pair is Python"
    broken = check(parsed(registry, "def area(w, h:\n    return w *\n))) ((( ]]\n", AREA))
    assert broken.reason == "error_share_above_threshold" and broken.fields["limit"] == 0.1
    assert broken.detail == f"chosen: {broken.fields['share']:.3f} > 0.1"
    assert check(parsed(registry, AREA_FIXED, AREA)) is None
    assert ParsesCleanly(registry, {"default": 0.1, "Python": 1.0}).check(parsed(registry, "def area(w, h:\n", AREA)) is None


def test_min_depth_and_differs_in_code(registry):
    assert reason_and_detail(MinDepth(3).check(parsed(registry, "pass\n", "pass  # for now\n"))) == ("too_shallow", "chosen: depth 2")
    pair = parsed(registry, AREA_FIXED, AREA)
    shallowest = min(pair.chosen.depth, pair.rejected.depth)
    assert MinDepth(shallowest).check(pair) is None  # exactly `min_depth` deep is deep enough
    assert MinDepth(shallowest + 1).check(pair).reason == "too_shallow"
    same = parsed(registry, "def area(w, h):\n    # the area\n    return   w * h\n", AREA)
    assert DiffersInCode().check(same).reason == "identical_after_normalisation"
    assert DiffersInCode().check(parsed(registry, AREA_FIXED, AREA)) is None


def test_the_stage_declares_every_filter_reason_in_order():
    assert list(Parse.drop_reasons()) == [reason for cls in FILTERS for reason in cls.reasons]
    assert Parse.drop_reasons()["too_long"] == ("size_limit", SizeLimit.reasons["too_long"])


def test_parse_both_sides_runs_the_filters_in_order_and_attaches_the_facts(registry):
    rows = [to_row(candidate("kept", AREA_FIXED, AREA)), to_row(candidate("empty", "", AREA)),
            to_row(candidate("cobol", "", AREA, language="COBOL")),  # empty and unknown: the first filter says why
            to_row(candidate("shallow", "pass\n", "pass  # for now\n"))]
    pipeline = BeamPipeline()
    outputs = pipeline | beam.Create(rows) | beam.ParDo(ParseBothSides(ParseConfig(), registry)).with_outputs(DROPPED, main="kept")
    assert_that(outputs.kept | beam.Map(lambda row: (row["pair_id"], row["chosen_facts"]["functions"])), equal_to([("kept", 1)]))
    drops = outputs[DROPPED] | beam.Map(lambda drop: (drop["key"], drop["reason"], drop["detail"], json.loads(drop["record"])["language"]))
    assert_that(drops, equal_to([("empty", "empty_side", "chosen", "Python"), ("cobol", "empty_side", "chosen", "COBOL"),
                                 ("shallow", "too_shallow", "chosen: depth 2", "Python")]), label="Drops")
    pipeline.run().wait_until_finish()
