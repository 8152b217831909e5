"""Label's `JudgeBatch` on its own, in Beam's TestPipeline (no orchestrator, no upstream stage): a batch of
candidate rows judged by the openai backend pointed at the scripted fake server (verdicts scripted per prompt),
`assert_that` on the votes, the counts and the keep decision of every pair, and on the drop of a refused one."""

from __future__ import annotations

import re

import apache_beam as beam
from apache_beam.testing.test_pipeline import (
    TestPipeline as BeamTestPipeline,  # aliased: pytest would collect "Test*"
)
from apache_beam.testing.util import assert_that, equal_to

from llm.cache import AnswerCache
from pipelines.core import DROPPED
from pipelines.label.stage import JudgeBatch, LabelConfig
from schemas import to_row
from tests.support.fake_openai import FakeOpenAI
from tests.support.stage_fixtures import candidate

SHOWN_A = r"Response A:\n```\w*\n[^`]*"  # the code shown first, whatever its fence


def script_verdicts() -> None:
    """The one judge's answers, scripted per pair: `agree` prefers the chosen side in both orders, `biased` always
    says A (position bias), `silent` never gives a verdict; prompts naming "Task refused." are answered 400."""
    FakeOpenAI.answers = [
        (SHOWN_A + "# agree chosen", "[VERDICT]A[/VERDICT]"), ("# agree ", "[VERDICT]B[/VERDICT]"),
        ("# biased ", "[VERDICT]A[/VERDICT]"),
        ("# silent ", "Both look fine to me."),
    ]
    FakeOpenAI.refuse = {"refused"}


def batch() -> list[dict]:
    pairs = [candidate(name, f"def f(xs):\n    return sorted(xs)  # {name} chosen\n", f"def f(xs):\n    return xs  # {name} rejected\n",
                       **({"prompt": "Task refused. Fix the function."} if name == "refused" else {}))
             for name in ("agree", "biased", "silent", "refused")]
    return [to_row(pair) for pair in pairs]


def label_config(url: str) -> LabelConfig:
    """2 votes per order; kept with at least 2 matches and at most 1 contradiction."""
    judge = {"backend": "openai", "model": "scripted", "base_url": url, "max_retries": 0, "timeout": 10}
    return LabelConfig(judges=[judge], votes=4, max_tokens=16, min_matches=2, max_contradictions=1)


def summary(row: dict) -> tuple:
    """A judged pair's votes (order, verdict, outcome), its counts per order, its margin and its keep decision."""
    votes = sorted((v["order"], v["verdict"], v["outcome"]) for v in row["votes"])
    counts = tuple((row[o]["matches"], row[o]["contradictions"], row[o]["ties"], row[o]["errors"]) for o in ("chosen_first", "chosen_second"))
    return row["pair_id"], tuple(votes), counts, row["margin"], row["kept"], row["keep_reason"]


EXPECTED = [
    ("agree", (("chosen_first", "A", "match"),) * 2 + (("chosen_second", "B", "match"),) * 2, ((2, 0, 0, 0), (2, 0, 0, 0)), 1.0,
     True, "kept"),
    ("biased", (("chosen_first", "A", "match"),) * 2 + (("chosen_second", "A", "contradiction"),) * 2, ((2, 0, 0, 0), (0, 2, 0, 0)),
     0.0, False, "too_many_contradictions: 2 > 1 (scripted)"),
    ("silent", (("chosen_first", None, "error"),) * 2 + (("chosen_second", None, "error"),) * 2, ((0, 0, 0, 2), (0, 0, 0, 2)), 0.0,
     False, "too_few_matches: 0 < 2 (scripted)"),
]


def test_judge_batch_votes_in_both_orders_decides_by_the_keep_rule_and_drops_a_refused_pair(tmp_path, faulty_judge):
    script_verdicts()
    cache = str(tmp_path / "label_answers")
    with BeamTestPipeline() as pipeline:
        judged = (pipeline | beam.Create([batch()])
                  | beam.ParDo(JudgeBatch(label_config(faulty_judge), cache)).with_outputs(DROPPED, main="judged"))
        assert_that(judged.judged | beam.Map(summary), equal_to(EXPECTED), label="Judged")
        assert_that(judged[DROPPED] | beam.Map(lambda d: (d["key"], d["reason"], "scripted 400" in d["detail"])),
                    equal_to([("refused", "judge_rejected", True)]), label="Dropped")
    # Every raw answer is kept in the cache, 2 per order of each judged pair; the refused pair has none.
    assert len(AnswerCache(cache)) == 3 * 2 * 2


def test_judge_batch_asks_only_for_answers_missing_from_its_cache(tmp_path, faulty_judge):
    script_verdicts()
    cache = str(tmp_path / "label_answers")
    for _ in range(2):  # the second batch finds every judged pair's answers cached: only the refused pair is asked again
        with BeamTestPipeline() as pipeline:
            judged = (pipeline | beam.Create([batch()])
                      | beam.ParDo(JudgeBatch(label_config(faulty_judge), cache)).with_outputs(DROPPED, main="judged"))
            assert_that(judged.judged | beam.Map(summary), equal_to(EXPECTED))
    asked = [re.search(r"# (\w+) chosen", " ".join(m["content"] for m in r["body"]["messages"])).group(1) for r in FakeOpenAI.requests]
    assert sorted(asked) == sorted(["agree", "biased", "silent"] * 2 + ["refused"] * 4)  # one request per pair and order
