"""The `label` stage: every branch of the keep rule on verdicts scripted per prompt (the fake OpenAI server), and
the real vLLM engine on CPU: both orders, counts, raw texts, cache on rerun."""

from __future__ import annotations

from llm.cache import AnswerCache
from pipelines.run.config import RunConfig, import_builtin_stages
from pipelines.run.orchestrator import run
from schemas import Candidate, JudgedPair
from storage import read_rows
from tests.support.fake_openai import FakeOpenAI
from tests.support.stage_fixtures import candidate, write_stage


def test_the_keep_rule_decides_from_votes_in_both_orders(run_stage, faulty_judge):
    """Scripted judges: one prefers the chosen side, one always says A (position bias), one prefers the rejected
    side, one ties, one never gives a verdict; 3 votes per order, kept with 2 matches and at most 1 contradiction."""
    shown_a = r"Response A:\n```\w*\n[^`]*"  # the code shown first, whatever its fence
    FakeOpenAI.answers = [
        (shown_a + "# agree chosen", "[VERDICT]A[/VERDICT]"), ("# agree ", "[VERDICT]B[/VERDICT]"),
        ("# biased ", "[VERDICT]A[/VERDICT]"),
        (shown_a + "# against rejected", "[VERDICT]A[/VERDICT]"), ("# against ", "[VERDICT]B[/VERDICT]"),
        ("# tie ", "[VERDICT]TIE[/VERDICT]"),
        ("# silent ", "Both look fine to me."),
    ]
    names = ("agree", "biased", "against", "tie", "silent")
    pairs = [candidate(name, f"def f(xs):\n    return sorted(xs)  # {name} chosen\n", f"def f(xs):\n    return xs  # {name} rejected\n")
             for name in names]
    judge = {"backend": "openai", "model": "scripted", "base_url": faulty_judge, "max_retries": 0, "timeout": 10}
    stage = {"judges": [judge], "votes": 6, "max_tokens": 16, "min_matches": 2, "max_contradictions": 1, "qualify": None}
    judged, _, manifest = run_stage("label", stage, upstream={"dedup": (pairs, Candidate)})

    counts = {name: {order: (row[order]["matches"], row[order]["contradictions"], row[order]["ties"], row[order]["errors"])
                     for order in ("chosen_first", "chosen_second")} for name, row in judged.items()}
    assert counts == {
        "agree": {"chosen_first": (3, 0, 0, 0), "chosen_second": (3, 0, 0, 0)},
        "biased": {"chosen_first": (3, 0, 0, 0), "chosen_second": (0, 3, 0, 0)},
        "against": {"chosen_first": (0, 3, 0, 0), "chosen_second": (0, 3, 0, 0)},
        "tie": {"chosen_first": (0, 0, 3, 0), "chosen_second": (0, 0, 3, 0)},
        "silent": {"chosen_first": (0, 0, 0, 3), "chosen_second": (0, 0, 0, 3)},
    }
    decisions = {name: (row["kept"], row["keep_reason"]) for name, row in judged.items()}
    assert decisions == {
        "agree": (True, "kept"),
        "biased": (False, "too_many_contradictions: 3 > 1 (scripted)"),
        "against": (False, "too_few_matches: 0 < 2 (scripted)"),
        "tie": (False, "too_few_matches: 0 < 2 (scripted)"),
        "silent": (False, "too_few_matches: 0 < 2 (scripted)"),
    }
    assert {name: row["margin"] for name, row in judged.items()} == {"agree": 1.0, "biased": 0.0, "against": -1.0, "tie": 0.0,
                                                                     "silent": 0.0}
    assert manifest.records_out == 5 and manifest.counters["backend_requests"] == 5 * 2  # one request per pair and order


def test_label_votes_in_both_orders_and_a_rerun_asks_for_nothing(tmp_path, smollm2, vllm_engine):
    import_builtin_stages()
    run_dir = tmp_path / "run"
    pairs = [
        candidate("p1", "s = set(xs)\nprint(x in s)\n", "print(x in xs)\n"),
        candidate("p2", "with open(p) as f:\n    data = f.read()\n", "data = open(p).read()\n"),
        candidate("p3", "def mean(xs):\n    return sum(xs) / len(xs) if xs else 0.0\n", "def mean(xs):\n    return sum(xs) / len(xs)\n"),
    ]
    write_stage(run_dir, "dedup", pairs, Candidate)
    stage = {"judges": [{"backend": "vllm", "model": smollm2}], "qualify": None, "votes": 4, "max_tokens": 16, "constrained": True,
             "min_matches": 3, "max_contradictions": 1}
    config = RunConfig(run_dir=str(run_dir), num_shards=1, runner={"running_mode": "in_memory", "workers": 1},
                       stages={"label": stage})
    (outcome,) = run(config)
    judged = {row["pair_id"]: row for row in read_rows(str(run_dir / "label"), JudgedPair)}
    assert set(judged) == {"p1", "p2", "p3"}
    cache = AnswerCache(str(run_dir / "label_answers"))
    assert len(cache) == 3 * 2 * 2  # pairs x orders x samples
    for row in judged.values():
        votes = row["votes"]
        assert [v["order"] for v in votes].count("chosen_first") == 2 and [v["order"] for v in votes].count("chosen_second") == 2
        assert all(v["verdict"] in ("A", "B", "TIE") for v in votes)  # constrained: no parse errors
        for order in ("chosen_first", "chosen_second"):
            counts = row[order]
            assert counts["matches"] + counts["contradictions"] + counts["ties"] + counts["errors"] == 2
        raw = cache.get_many_by_key([v["answer_key"] for v in votes])
        assert len(raw) == 4 and all("[VERDICT]" in text for text in raw.values())
        # Each vote's outcome from its order and verdict, the order counts from the votes, the decision from the counts.
        expected = {("chosen_first", "A"): "match", ("chosen_second", "B"): "match",
                    ("chosen_first", "B"): "contradiction", ("chosen_second", "A"): "contradiction"}
        assert [v["outcome"] for v in votes] == [expected.get((v["order"], v["verdict"]), "tie") for v in votes]  # TIE: a tie
        for order in ("chosen_first", "chosen_second"):
            of_order = [v["outcome"] for v in votes if v["order"] == order]
            assert (row[order]["matches"], row[order]["contradictions"]) == (of_order.count("match"), of_order.count("contradiction"))
        matches = sum(v["outcome"] == "match" for v in votes)
        contradictions = sum(v["outcome"] == "contradiction" for v in votes)
        judge = votes[0]["judge"]  # consensus "all": a failed rule names its judge
        if matches < 3:
            assert (row["kept"], row["keep_reason"]) == (False, f"too_few_matches: {matches} < 3 ({judge})")
        elif contradictions > 1:
            assert (row["kept"], row["keep_reason"]) == (False, f"too_many_contradictions: {contradictions} > 1 ({judge})")
        else:
            assert (row["kept"], row["keep_reason"]) == (True, "kept")
    manifest = outcome.manifest
    assert manifest.counters["backend_requests"] == 6 and manifest.records_out == 3

    (again,) = run(config, force=True)  # redo the stage: every answer comes from the cache
    assert again.manifest.counters.get("backend_requests", 0) == 0
    assert again.manifest.counters["answers_from_cache"] == 12
    rerun = {row["pair_id"]: row for row in read_rows(str(run_dir / "label"), JudgedPair)}
    assert rerun == judged


def test_two_judges_vote_apart_and_the_consensus_rule_decides(tmp_path, smollm2, vllm_engine):
    from pipelines.label.voting import KeepRule
    from schemas import Vote

    import_builtin_stages()
    run_dir = tmp_path / "run"
    pairs = [candidate("p1", "s = set(xs)\nprint(x in s)\n", "print(x in xs)\n"),
             candidate("p2", "total = sum(xs)\n", "total = 0\nfor x in xs:\n    total = total + x\n")]
    write_stage(run_dir, "dedup", pairs, Candidate)
    judges = [{"backend": "vllm", "model": smollm2, "name": "smollm2-vllm"},
              {"backend": "transformers", "model": smollm2, "name": "smollm2-hf"}]

    def label(consensus: str, force: bool = False):
        stage = {"judges": judges, "qualify": None, "votes": 2, "max_tokens": 16, "constrained": True, "min_matches": 1,
                 "max_contradictions": 0, "consensus": consensus}
        config = RunConfig(run_dir=str(run_dir), num_shards=1, runner={"running_mode": "in_memory", "workers": 1},
                           stages={"label": stage})
        (outcome,) = run(config, force=force)
        return outcome, {row["pair_id"]: row for row in read_rows(str(run_dir / "label"), JudgedPair)}

    outcome, judged = label("all")
    assert set(judged) == {"p1", "p2"}
    assert outcome.manifest.counters["backend_requests"] == 2 * 2 * 2  # judges x pairs x orders
    assert len(AnswerCache(str(run_dir / "label_answers"))) == 8
    for row in judged.values():
        by_judge = {name: [v for v in row["votes"] if v["judge"] == name] for name in ("smollm2-vllm", "smollm2-hf")}
        for votes in by_judge.values():
            assert sorted(v["order"] for v in votes) == ["chosen_first", "chosen_second"]
        votes = [Vote(**v) for v in row["votes"]]
        assert (row["kept"], row["keep_reason"]) == KeepRule(1, 0, "all").decide(votes)

    again, pooled = label("pooled", force=True)  # another rule over the same answers: nothing asked again
    assert set(pooled) == {"p1", "p2"}
    assert again.manifest.counters.get("backend_requests", 0) == 0
    for row in pooled.values():
        assert (row["kept"], row["keep_reason"]) == KeepRule(1, 0, "pooled").decide([Vote(**v) for v in row["votes"]])


def test_label_judges_only_its_sample_of_pairs(tmp_path, smollm2, vllm_engine):
    from pipelines.label.stage import sample_rank
    from schemas import Drop

    import_builtin_stages()
    run_dir = tmp_path / "run"
    pairs = [candidate(f"s{i}", f"def f(xs):\n    return sorted(xs)[:{i}]\n", f"def f(xs):\n    return xs[:{i}]\n") for i in range(5)]
    write_stage(run_dir, "dedup", pairs, Candidate)
    stage = {"judges": [{"backend": "vllm", "model": smollm2}], "qualify": None, "votes": 2, "max_tokens": 16, "constrained": True, "sample": 2,
             "min_matches": 1}
    config = RunConfig(run_dir=str(run_dir), num_shards=1, runner={"running_mode": "in_memory", "workers": 1}, stages={"label": stage})
    (outcome,) = run(config)
    expected = sorted((p.pair_id for p in pairs), key=sample_rank)[:2]
    assert sorted(row["pair_id"] for row in read_rows(str(run_dir / "label"), JudgedPair)) == sorted(expected)
    drops = {d["key"]: d["reason"] for d in read_rows(str(run_dir / "label" / "_dropped"), Drop)}
    assert set(drops) == {p.pair_id for p in pairs} - set(expected) and set(drops.values()) == {"not_sampled"}
    assert outcome.manifest.counters["backend_requests"] == 4  # 2 pairs x 2 orders
