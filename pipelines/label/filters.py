"""The drop reasons of the label stage. Judges never drop a pair by their votes (a pair not kept is still
written, with why); only a refused request and the sample do."""

from __future__ import annotations

from pipelines.core import DropReasons

JUDGING = DropReasons("judging", {
    "judge_rejected": "a judge's backend refused the pair's request (e.g. a prompt longer than `max_model_len`, an HTTP 400)",
    "no_qualified_judge": "the pair needs a judge, no judge qualified, and `qualify.on_unqualified` is truth_only",
})

SAMPLE = DropReasons("sample", {
    "not_sampled": "outside the `sample` of pairs judged (those of lowest pair-id hash; pairs labelled by execution are never sampled out)",
})
