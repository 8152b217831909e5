"""The filter protocol: a filter keeps a record or drops it with a declared reason; the base counts the drop under
`dropped_<reason>`, routes a drop record, and refuses a reason its filter does not declare."""

from __future__ import annotations

import json
import pickle
from typing import ClassVar

import apache_beam as beam
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.testing.test_pipeline import TestPipeline as BeamPipeline
from apache_beam.testing.util import assert_that, equal_to

from pipelines.core import (
    DROPPED,
    REJECTED,
    DropReasons,
    RecordFilter,
    Rejection,
    UndeclaredReason,
    apply_filter,
    declared_reasons,
    filter_outputs,
    metrics_namespace,
    route,
)

STAGE = "unit"
ROWS = [{"id": "a", "message": "Fix the loop bound"}, {"id": "b", "message": "wip"}, {"id": "c", "message": ""}]


class ShortMessage(RecordFilter):
    name = "short_message"
    reasons: ClassVar[dict[str, str]] = {
        "message_too_short": "message shorter than `min_chars`",
        "empty_message": "no message at all",
    }

    def __init__(self, min_chars: int = 5, reason: str | None = None):
        super().__init__(STAGE, "id")
        self.min_chars, self.reason = min_chars, reason

    def check(self, record):
        if not record["message"]:
            return self.reject("empty_message")
        if len(record["message"]) < self.min_chars:
            return Rejection(self.reason or "message_too_short", "{chars} characters < {least}", chars=len(record["message"]),
                             least=self.min_chars)
        return None


def counters(result) -> dict[str, int]:
    found = result.metrics().query(MetricsFilter().with_namespace(metrics_namespace(STAGE)))["counters"]
    return {counter.key.metric.name: counter.committed for counter in found}


def test_a_filter_keeps_drops_and_counts_each_reason():
    pipeline = BeamPipeline()
    kept, dropped = apply_filter(pipeline | beam.Create(ROWS), "ShortMessage", ShortMessage())
    assert_that(kept, equal_to([ROWS[0]]), label="Kept")
    drops = dropped | beam.Map(lambda drop: (drop["stage"], drop["key"], drop["reason"], drop["detail"], json.loads(drop["record"])))
    assert_that(drops, equal_to([
        (STAGE, "b", "message_too_short", "3 characters < 5", ROWS[1]),
        (STAGE, "c", "empty_message", "", ROWS[2]),
    ]), label="Dropped")
    result = pipeline.run()
    result.wait_until_finish()
    assert counters(result) == {"dropped_message_too_short": 1, "dropped_empty_message": 1}


def test_a_filter_that_gives_a_reason_it_does_not_declare_fails_the_run():
    pipeline = BeamPipeline()
    apply_filter(pipeline | beam.Create(ROWS), "ShortMessage", ShortMessage(reason="too_terse"))
    with pytest.raises(Exception, match="short_message gave the drop reason 'too_terse', which it does not declare"):
        pipeline.run().wait_until_finish()
    with pytest.raises(UndeclaredReason, match="declared: message_too_short, empty_message"):
        ShortMessage.reject("too_terse")


def test_structured_rejections_go_to_their_own_output_when_asked():
    class Contaminated(ShortMessage):
        emits_rejections = True

    pipeline = BeamPipeline()
    outputs = filter_outputs(pipeline | beam.Create(ROWS), "Contaminated", Contaminated())
    rejected = outputs[REJECTED] | beam.MapTuple(lambda key, rejection: (key, rejection.reason, dict(rejection.fields)))
    assert_that(rejected, equal_to([("b", "message_too_short", {"chars": 3, "least": 5}), ("c", "empty_message", {})]))
    assert_that(outputs[DROPPED] | beam.Map(lambda drop: drop["key"]), equal_to(["b", "c"]), label="Drops")
    pipeline.run().wait_until_finish()


def test_a_step_that_decides_several_things_routes_through_its_declared_reasons():
    sample = DropReasons("sample", {"not_sampled": "outside the sample"})
    output = route(STAGE, "p1", sample.reject("not_sampled", "outside the sample of {size}", size=2), {"pair_id": "p1"}, sample)
    assert output.tag == DROPPED
    assert output.value == {"stage": STAGE, "key": "p1", "reason": "not_sampled", "detail": "outside the sample of 2",
                            "record": '{"pair_id": "p1"}'}
    with pytest.raises(UndeclaredReason, match="sample gave the drop reason 'judge_rejected'"):
        route(STAGE, "p1", Rejection("judge_rejected"), {}, sample)


def test_a_rejection_renders_its_fields_and_survives_pickling():
    rejection = Rejection("too_long", "{side}: {bytes} bytes ({text!r})", side="chosen", bytes=12, text="{not a field}")
    assert rejection.detail == "chosen: 12 bytes ('{not a field}')"
    assert pickle.loads(pickle.dumps(rejection)) == rejection
    assert rejection != Rejection("too_long", "{side}: {bytes} bytes ({text!r})", side="rejected", bytes=12, text="")
    assert Rejection("empty_file").detail == ""


def test_declared_reasons_name_every_declarer_of_a_shared_reason():
    first = DropReasons("git", {"corrupt_object": "an object cannot be read", "broken_ref": "a reference names nothing"})
    second = DropReasons("file", {"corrupt_object": "a blob cannot be read"})
    assert declared_reasons([first, ShortMessage, second]) == {
        "corrupt_object": ("git, file", "an object cannot be read"),
        "broken_ref": ("git", "a reference names nothing"),
        "message_too_short": ("short_message", "message shorter than `min_chars`"),
        "empty_message": ("short_message", "no message at all"),
    }
