"""The judging protocol (both orders, outcomes, keep rules) and the answer cache."""

from __future__ import annotations

import pytest

from llm.cache import AnswerCache, AnswerKey
from llm.judging import JudgeTask
from pipelines.label.voting import KeepRule, count, margin, outcome
from schemas import OrderCounts, Vote

PAIR = {"prompt": "Check membership fast.", "chosen": "s = set(xs)\nx in s\n", "rejected": "x in xs\n",
        "criterion": "Runtime Efficiency", "language": "Python", "fence": "python"}


def test_the_two_orders_swap_the_responses():
    (first,) = JudgeTask().format_input({**PAIR, "order": "chosen_first"})
    (second,) = JudgeTask().format_input({**PAIR, "order": "chosen_second"})
    a_first = first["content"].split("Response A:")[1].split("Response B:")[0]
    a_second = second["content"].split("Response A:")[1].split("Response B:")[0]
    assert "set(xs)" in a_first and "set(xs)" not in a_second
    assert "runtime efficiency" in first["content"] and "[VERDICT]" in first["content"]


@pytest.mark.parametrize(
    ("text", "verdict"),
    [
        ("B is slower. [VERDICT]A[/VERDICT]", "A"),
        ("[verdict] b [\\verdict]", "B"),
        ("[VERDICT]TIE[/VERDICT]", "TIE"),
        ("[VERDICT]A[/VERDICT] on reflection [VERDICT]B[/VERDICT]", "B"),  # the last verdict counts
        ("```\nprint('[VERDICT]A[/VERDICT]')\n```\nFinal: [VERDICT]B[/VERDICT]", "B"),  # a tag inside code is not the verdict
        ("[VERDICT] A. [/VERDICT]", "A"),
    ],
)
def test_verdicts_parse(text, verdict):
    assert JudgeTask().parse_output(text).fields == {"verdict": verdict}


@pytest.mark.parametrize(
    ("text", "reason"),
    [("I prefer A.", "no [VERDICT] block"), ("[VERDICT]A", "truncated"), ("[VERDICT]both[/VERDICT]", "not a verdict"), ("", "no [VERDICT]")],
)
def test_bad_answers_are_errors_with_a_reason(text, reason):
    parsed = JudgeTask().parse_output(text)
    assert parsed.fields is None and parsed.reason.startswith(reason)


def test_outcomes_depend_on_the_order():
    assert outcome("chosen_first", "A") == outcome("chosen_second", "B") == "match"
    assert outcome("chosen_first", "B") == outcome("chosen_second", "A") == "contradiction"
    assert outcome("chosen_first", "TIE") == "tie" and outcome("chosen_second", None) == "error"


def votes(spec: list[tuple[str, str, str | None]]) -> list[Vote]:
    return [Vote(judge, "judge.v1", order, i, 0, verdict, outcome(order, verdict), f"k{i}")
            for i, (judge, order, verdict) in enumerate(spec)]


def test_counts_margin_and_keep_rule():
    eight = votes([("m", "chosen_first", "A")] * 3 + [("m", "chosen_first", None)] + [("m", "chosen_second", "B")] * 3
                  + [("m", "chosen_second", "B")])
    assert count(eight, "chosen_first") == OrderCounts(matches=3, errors=1)
    assert count(eight, "chosen_second") == OrderCounts(matches=4)
    assert margin(eight) == pytest.approx(7 / 8)
    assert KeepRule(min_matches=6, max_contradictions=1).decide(eight) == (True, "kept")
    split = votes([("m", "chosen_first", "A")] * 4 + [("m", "chosen_second", "A")] * 4)  # always A: pure position bias
    assert margin(split) == 0.0
    assert KeepRule().decide(split)[1].startswith("too_few_matches")
    assert KeepRule().decide([]) == (False, "no_votes")


def test_several_judges_all_or_pooled():
    strong = votes([("big", "chosen_first", "A")] * 4 + [("big", "chosen_second", "B")] * 4)
    weak = votes([("small", "chosen_first", "A")] * 2 + [("small", "chosen_second", "A")] * 2)
    assert KeepRule(min_matches=6).decide(strong + weak) == (False, "too_few_matches: 2 < 6 (small)")
    assert KeepRule(min_matches=6, max_contradictions=2, consensus="pooled").decide(strong + weak) == (True, "kept")
    with pytest.raises(ValueError, match="consensus"):
        KeepRule(consensus="most")


def test_answer_cache_survives_the_process_and_keeps_first_answers(tmp_path):
    path = str(tmp_path / "run" / "label_answers")
    keys = [AnswerKey("smollm2", "judge.v1", "p1", order, sample, 7) for order in ("chosen_first", "chosen_second") for sample in range(4)]
    cache = AnswerCache(path)
    assert cache.get_many(keys) == {}
    assert cache.put_many([(k, f"[VERDICT]A[/VERDICT] {k.sample}") for k in keys[:5]]) == 5
    cache.close()
    again = AnswerCache(path)
    found = again.get_many(keys)
    assert len(found) == 5 and found[keys[0].key].endswith("0")
    assert again.put_many([(keys[0], "a different answer"), (keys[7], "new")]) == 1
    assert again.get_many([keys[0]])[keys[0].key].startswith("[VERDICT]A")
    assert len({k.key for k in keys}) == 8 and AnswerKey("other", "judge.v1", "p1", "chosen_first", 0, 7).key != keys[0].key
