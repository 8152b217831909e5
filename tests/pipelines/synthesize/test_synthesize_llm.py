"""The synthesis tasks: commit review with a cut-off, instruction recovery in five styles, LLM bug
introduction, all cache first; every drop reason with answers scripted per prompt (the fake OpenAI server),
and the whole on the real vLLM engine on CPU (the packaged SmolLM2)."""

from __future__ import annotations

import json
import re

import pytest

from llm.tasks import INSTRUCTION_STYLES, InstructionRecovery
from pipelines.run.config import ConfigError
from schemas import Commit
from tests.support.fake_openai import FakeOpenAI
from tests.support.inputs import commit


def test_styles_are_spread_over_commits_and_stable():
    styles = [InstructionRecovery.style_for(f"commit/octo/demo/{i:040x}") for i in range(200)]
    assert set(styles) == set(INSTRUCTION_STYLES)
    assert styles == [InstructionRecovery.style_for(f"commit/octo/demo/{i:040x}") for i in range(200)]


def test_llm_bug_injection_needs_a_model(run_stage):
    with pytest.raises(ConfigError, match="bug_injection 'llm' needs"):
        run_stage("synthesize", {"inputs": [], "instruct": [{"name": "human-eval", "limit": 1, "bug_injection": "llm"}]})


LARGER = "def larger(a, b):\n    return a if a > b else b\n"
LARGER_TESTS = "assert larger(3, 5) == 5\nassert larger(5, 3) == 5\nassert larger(2, 2) == 2\n"


def buggy(code: str) -> str:
    return f"[BUGGY_CODE]\n{code}[/BUGGY_CODE]"


def test_every_review_and_llm_bug_outcome_is_a_counted_drop_or_a_pair(tmp_path, run_stage, faulty_judge):
    """Answers scripted per prompt produce each outcome of the review (cut-off 4) and of LLM bug introduction once."""
    review = "Commit message:\nFix broken parser in module "
    FakeOpenAI.answers = [
        (review + "alpha", "Clearly better.\n[RATING]5[/RATING]"),
        (review + "beta", "Doubtful.\n[RATING]2[/RATING]"),
        (review + "gamma", "I would rather not say."),  # no [RATING] block
        ("Write the task that the improved version solves",
         "[DESCRIPTION]d[/DESCRIPTION]\n[PROBLEM_STATEMENT]Parse alpha.[/PROBLEM_STATEMENT]"),
        (r"\(case unchanged\)", buggy(LARGER)),
        (r"\(case parse\)", buggy("def larger(a, b:\n    return a if a > b else b\n")),
        (r"\(case passes\)", buggy("def larger(a, b):\n    return b if b > a else a\n")),  # another correct solution
        (r"\(case kept\)", buggy("def larger(a, b):\n    return a if a < b else b\n")),
        (r"\(case unparsed\)", "Sorry, I cannot help with that."),
    ]
    FakeOpenAI.refuse = {"refused"}  # prompts naming "Task refused." are answered 400
    commits = [commit(letter * 40, f"Fix broken parser in module {name}" + (" Task refused." if name == "delta" else ""),
                      after=f"def f(x):\n    return abs(x)  # {name}\n")
               for letter, name in (("a", "alpha"), ("b", "beta"), ("c", "gamma"), ("d", "delta"))]
    rows = tmp_path / "tasks.jsonl"
    cases = ("unchanged", "parse", "passes", "kept", "unparsed", "refused")
    named = {case: "Task refused. " if case == "refused" else "" for case in cases}
    rows.write_text("".join(json.dumps({"id": case, "instruction": f"Return the larger of a and b ({named[case]}case {case}).",
                                        "solution": LARGER, "tests": LARGER_TESTS}) + "\n" for case in cases))
    llm = {"model": {"backend": "openai", "model": "scripted", "base_url": faulty_judge, "max_retries": 0, "timeout": 10},
           "review_cutoff": 4, "temperature": 0.0}
    config = {"llm": llm, "instruct": [{"name": "tasks", "path": str(rows), "tests_column": "tests", "bug_injection": "llm"}]}
    synthesized = run_stage("synthesize", config, upstream={"mine": (commits, Commit)})
    pairs, drops, manifest = synthesized

    expected = {
        f"commit/octo/demo/{'b' * 40}/functional-correctness": "review_below_cutoff",
        f"commit/octo/demo/{'c' * 40}/functional-correctness": "review_unparsed",
        f"commit/octo/demo/{'d' * 40}/functional-correctness": "review_rejected",
        "instruct/tasks/unchanged": "llm_bug_unchanged",
        "instruct/tasks/parse": "llm_bug_parse_errors",
        "instruct/tasks/passes": "llm_bug_passes_tests",
        "instruct/tasks/unparsed": "llm_bug_unparsed",
        "instruct/tasks/refused": "llm_bug_rejected",
    }
    assert drops == expected
    assert manifest.dropped == {reason: 1 for reason in expected.values()}  # each counted once, under its reason
    assert synthesized.details[f"commit/octo/demo/{'b' * 40}/functional-correctness"] == "rated 2 < 4"
    assert synthesized.details["instruct/tasks/unparsed"] == "no [BUGGY_CODE] block"
    assert set(pairs) == {f"commit/octo/demo/{'a' * 40}/functional-correctness", "instruct/tasks/kept"}
    reviewed = pairs[f"commit/octo/demo/{'a' * 40}/functional-correctness"]
    assert (reviewed["review_rating"], reviewed["prompt"], reviewed["prompt_origin"]) == (5, "Parse alpha.", "recovered")
    bug = pairs["instruct/tasks/kept"]
    assert bug["verified"] is True and bug["rejected"] == "def larger(a, b):\n    return a if a < b else b"
    assert bug["origin"]["mutation_operator"] == "llm:scripted" and bug["verification"].startswith("solution passed; mutant failed")
    # 4 reviews, 1 recovery (only the kept commit gets one), 6 bug requests: each asked once.
    assert len(FakeOpenAI.requests) == 4 + 1 + 6


def test_review_recovery_and_llm_bugs_on_the_real_engine_and_a_rerun_asks_for_nothing(tmp_path, smollm2, vllm_engine, run_stage):
    commits = [
        commit("a" * 40, "Fix broken mean on empty input and speed up the loop",
               "def total(xs):\n    t = 0\n    for i in range(len(xs)):\n        t = t + xs[i]\n    return t / len(xs)\n",
               "def mean(xs):\n    return sum(xs) / len(xs) if xs else 0.0\n"),
        commit("b" * 40, "Sanitize the file name before opening it",
               "def load(name):\n    return open('/data/' + name).read()\n",
               "import os\n\ndef load(name):\n    safe = os.path.basename(name)\n    with open(os.path.join('/data', safe)) as f:\n        return f.read()\n"),
    ]
    llm = {"model": {"backend": "vllm", "model": smollm2, "max_model_len": 2048}, "review_cutoff": 3, "constrained": True,
           "max_tokens": 320, "temperature": 0.0}
    config = {"inputs": ["mine"], "llm": llm, "instruct": [{"name": "human-eval", "limit": 2, "bug_injection": "llm"}]}
    synthesized = run_stage("synthesize", config, upstream={"mine": (commits, Commit)})
    pairs, drops, manifest = synthesized

    # Whatever the model rates, each of the three commit pairs (a: correctness and runtime, b: security) is kept with
    # its rating at or above the cut-off, or dropped below it, the rating named (constrained: every review parses).
    # The scripted server above drives each branch on purpose; here they run on a real model's answers.
    expected = {f"commit/octo/demo/{'a' * 40}/functional-correctness", f"commit/octo/demo/{'a' * 40}/runtime-efficiency",
                f"commit/octo/demo/{'b' * 40}/security-hardness"}
    kept = {key for key in pairs if key.startswith("commit/")}
    assert kept | {key for key in drops if key.startswith("commit/")} == expected and not kept & set(drops)
    for pair_id in sorted(expected):
        if pair_id not in kept:
            assert drops[pair_id] == "review_below_cutoff" and re.fullmatch(r"rated [12] < 3", synthesized.details[pair_id])
            continue
        pair = pairs[pair_id]
        assert pair["review_rating"] in (3, 4, 5)
        if pair["prompt_origin"] == "recovered":
            assert pair["origin"]["instruction_style"] in INSTRUCTION_STYLES and pair["prompt"].strip()
            assert "[PROBLEM_STATEMENT]" not in pair["prompt"]
        else:
            assert pair["prompt_origin"] == "subject_fallback"
    counters = manifest.counters
    assert counters.get("instructions_recovered", 0) + counters.get("instructions_not_recovered", 0) == len(kept)
    # 3 reviews, one recovery per commit with a kept pair (commit a's two pairs share theirs), 2 bug requests.
    commits_kept = {pairs[key]["origin"]["commit"] for key in kept}
    assert counters["backend_requests"] == 3 + len(commits_kept) + 2
    assert len({(pairs[key]["prompt"], pairs[key]["prompt_origin"]) for key in kept if "a" * 40 in key}) <= 1

    # A weak model's bugs: each problem ends as a verified pair or a counted, explained drop.
    bug_ids = {f"instruct/human-eval/{i}" for i in range(2)}
    assert {k for k in pairs if k.startswith("instruct/")} | {k for k in drops if k.startswith("instruct/")} == bug_ids
    for key in sorted(bug_ids):
        if key in pairs:
            assert pairs[key]["verified"] is True and pairs[key]["origin"]["mutation_operator"] == f"llm:{smollm2}"
        else:
            assert drops[key].startswith("llm_bug_") and synthesized.details[key]
    assert sum(manifest.dropped.values()) == len(drops)  # every drop counted under its reason

    again_pairs, again_drops, again = run_stage("synthesize", config, upstream={"mine": (commits, Commit)})
    # Nothing asked again (the recovery shared by commit a's two pairs is read once per batch holding one).
    assert again.counters.get("backend_requests", 0) == 0 and again.counters["answers_from_cache"] >= counters["backend_requests"]
    assert again_pairs == pairs and again_drops == drops
