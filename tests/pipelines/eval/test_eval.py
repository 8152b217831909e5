"""Reward-model evaluation: metrics on hand-computed scores, recompute from score files, and a tiny
random Llama classifier scoring a CRB-format benchmark end to end in every system-prompt mode."""

from __future__ import annotations

import json
import math
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from audit.agreement import wilson_interval
from pipelines.eval import (
    BENCH_COLUMNS,
    RESULTS_FILE,
    SCORES_FILE,
    BenchmarkError,
    BenchPair,
    BenchPairEncoder,
    EvalConfig,
    ModelError,
    PairError,
    ScoresError,
    ScoringError,
    evaluate,
    read_benchmark,
    recompute,
    results,
    score,
    scores_table,
    write_scores,
)
from schemas import CRITERIA
from tests.support.model_fixtures import tiny_causal_lm

MEAN = "def mean(xs):\n    return sum(xs) / len(xs) if xs else 0.0\n"
MEAN_UNSAFE = "def mean(xs):\n    return sum(xs) / len(xs)\n"
LOOP = "for (int i = 0; i < n; i++) { total += a[i]; }\n"
LOOP_OFF = "for (int i = 0; i <= n; i++) { total += a[i]; }\n"
ADD = "func add(a int, b int) int { return a + b }\n"
ADD_WRONG = "func add(a int, b int) int { return a - b }\n"


def pair(pair_id: str, language: str, aspect: str, subset: str, chosen: str = MEAN, rejected: str = MEAN_UNSAFE,
         prompt: str = "Write a function that returns the mean of a list.") -> BenchPair:
    return BenchPair(pair_id, prompt, chosen, rejected, language, aspect, subset)


BENCH = [
    pair("crb-0", "Python", "Functional_Correctness", "HUMANEVAL_PACK"),
    pair("crb-1", "Cpp", "Runtime_Efficiency", "PIE_PERF", LOOP, LOOP_OFF, "Sum the array a of n integers."),
    pair("crb-2", "Go", "Functional_Correctness", "RUNBUGRUN", ADD, ADD_WRONG, "Add two integers in Go."),
    pair("crb-3", "CSharp", "Security_Hardness", "COMMITPREFS_SECURITY"),
    pair("crb-4", "Python", "Memory_Efficiency", "COMMITPREFS_MEMORY", MEAN, MEAN),  # identical sides: a tie
    pair("crb-5", "Ruby", "Readability_Maintainability", "COMMITPREFS_READABILITY", MEAN_UNSAFE, MEAN,
         "Prefer the faster and safer response. " * 30 + "Write a function that returns the mean of a list."),
]


def write_bench(path, pairs=BENCH) -> str:
    pq.write_table(pa.Table.from_pylist([{c: getattr(p, c) for c in BENCH_COLUMNS} for p in pairs]), path)
    return str(path)


@pytest.fixture(scope="module")
def reward_model(tmp_path_factory):
    """The tiny Llama as a one-label sequence classifier (score head drawn with seed 0), saved with its tokenizer."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    root = tmp_path_factory.mktemp("models")
    lm = tiny_causal_lm(root / "lm")
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(lm, num_labels=1)
    tokenizer = AutoTokenizer.from_pretrained(lm)
    model.config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(root / "rm")
    tokenizer.save_pretrained(root / "rm")
    return {"rm": str(root / "rm"), "lm": str(lm), "tokenizer": tokenizer}


# --- metrics -------------------------------------------------------------------------------------------------


def hand_scores() -> pa.Table:
    """Score differences 1, 3, 0, -2, 0, 4: three correct, two ties; spellings mixed on purpose."""
    rows = [  # id, chosen, rejected, language, aspect, subset
        ("a", 2.0, 1.0, "Cpp", "Runtime_Efficiency", "S1"),
        ("b", 3.5, 0.5, "C++", "Runtime Efficiency", "S1"),
        ("c", 0.25, 0.25, "Python", "Functional_Correctness", "S2"),
        ("d", -1.0, 1.0, "python", "Functional_Correctness", "S2"),
        ("e", 0.5, 0.5, "Cpp", "Security_Hardness", "S3"),
        ("f", 4.0, 0.0, "Rust", "Runtime_Efficiency", "S1"),
    ]
    pairs = [BenchPair(i, "", "", "", language, aspect, subset) for i, _, _, language, aspect, subset in rows]
    return scores_table(pairs, [r[1] for r in rows], [r[2] for r in rows])


def test_results_are_exact_on_hand_computed_scores_with_ties():
    summary = results(hand_scores())
    overall = summary.pop("overall")
    assert {k: overall[k] for k in ("accuracy", "total_examples", "correct_predictions", "ties")} == {
        "accuracy": 0.5, "total_examples": 6, "correct_predictions": 3, "ties": 2}
    assert overall["mean_score_difference"] == pytest.approx(1.0)
    assert overall["median_score_difference"] == pytest.approx(0.5)  # of -2, 0, 0, 1, 3, 4
    assert overall["std_score_difference"] == pytest.approx(math.sqrt(24 / 5))  # sample std: squares 0+4+1+9+1+9
    assert overall["accuracy_ci95"] == pytest.approx(list(wilson_interval(3, 6)))
    intervals = {name: {key: group.pop("accuracy_ci95") for key, group in groups.items()} for name, groups in summary.items()}
    assert intervals["by_language"]["Cpp"] == pytest.approx(list(wilson_interval(2, 3)))
    assert intervals["by_subset"]["S3"] == pytest.approx(list(wilson_interval(0, 1)))
    assert summary == {
        # `Cpp` and `C++` are one group, keyed by the more frequent spelling; `Python`/`python` tie: first spelling
        # in sort order; `Rust` is not in the vocabulary: a group of its own.
        "by_language": {
            "Cpp": {"accuracy": 2 / 3, "count": 3, "correct": 2, "ties": 1},
            "Python": {"accuracy": 0.0, "count": 2, "correct": 0, "ties": 1},
            "Rust": {"accuracy": 1.0, "count": 1, "correct": 1, "ties": 0},
        },
        "by_aspect": {
            "Functional_Correctness": {"accuracy": 0.0, "count": 2, "correct": 0, "ties": 1},
            "Runtime_Efficiency": {"accuracy": 1.0, "count": 3, "correct": 3, "ties": 0},
            "Security_Hardness": {"accuracy": 0.0, "count": 1, "correct": 0, "ties": 1},
        },
        "by_subset": {
            "S1": {"accuracy": 1.0, "count": 3, "correct": 3, "ties": 0},
            "S2": {"accuracy": 0.0, "count": 2, "correct": 0, "ties": 1},
            "S3": {"accuracy": 0.0, "count": 1, "correct": 0, "ties": 1},
        },
    }
    assert hand_scores().column("correct").to_pylist() == [True, True, False, False, False, True]  # a tie is not correct


def test_recompute_from_our_file_and_a_published_layout_gives_the_same_results(tmp_path):
    table = hand_scores()
    ours = tmp_path / SCORES_FILE
    write_scores(table, ours)
    assert recompute(ours) == results(table)
    # The published Themis files keep `id` as the pandas index and were written by pandas.
    published = tmp_path / "published.parquet"
    table.to_pandas().set_index("id").to_parquet(published, index=True)
    assert recompute(published) == results(table)


def test_scores_that_cannot_be_summarised_name_the_file(tmp_path):
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"not parquet")
    with pytest.raises(ScoresError, match="broken.parquet"):
        recompute(broken)
    thin = tmp_path / "thin.parquet"
    pq.write_table(hand_scores().drop_columns(["subset"]), thin)
    with pytest.raises(ScoresError, match=r"thin\.parquet: no column subset"):
        recompute(thin)
    nan = hand_scores().set_column(0, "chosen_score", pa.array([math.nan, 1, 1, 1, 1, 1], pa.float64()))
    with pytest.raises(ScoresError, match=r"pair a: 'chosen_score' is not a finite number \(1 such values\)"):
        results(nan)


def test_unparsed_answers_count_as_incorrect_as_in_the_published_generative_runs():
    """The published layout of a generative judge: an empty score where the answer did not parse, marked in
    parse_failed / chosen_parse_failed / rejected_parse_failed; accuracy counts it incorrect, the valid-only figures
    leave it out. An empty score that is not so marked is still an error naming the pair."""
    table = hand_scores()  # differences 1, 3, 0, -2, 0, 4: a, b, f correct; c, e ties
    chosen = pa.array([2.0, None, 0.25, -1.0, 0.5, 4.0], pa.float64())  # b did not parse
    rejected = pa.array([1.0, 0.5, 0.25, 1.0, 0.5, None], pa.float64())  # f did not parse
    generative = (table.set_column(0, "chosen_score", chosen).set_column(1, "rejected_score", rejected)
                  .append_column("chosen_parse_failed", pa.array([False, True, False, False, False, False]))
                  .append_column("rejected_parse_failed", pa.array([False, False, False, False, False, True]))
                  .append_column("parse_failed", pa.array([False, True, False, False, False, True])))
    overall = results(generative)["overall"]
    assert {k: overall[k] for k in ("accuracy", "correct_predictions", "total_examples", "ties", "accuracy_valid_only", "valid_pairs",
                                    "total_parse_failures", "parse_failure_rate")} == {
        "accuracy": 1 / 6, "correct_predictions": 1, "total_examples": 6, "ties": 2, "accuracy_valid_only": 1 / 4, "valid_pairs": 4,
        "total_parse_failures": 2, "parse_failure_rate": 2 / 6}
    assert overall["mean_score_difference"] == pytest.approx((1 + 0 - 2 + 0) / 4)  # the pairs scored
    by_subset = results(generative)["by_subset"]
    assert (by_subset["S1"]["correct"], by_subset["S1"]["parse_failures"]) == (1, 2)
    # The side flags alone are enough; a reward model's table (no flag columns) keeps the published keys only.
    sides = generative.drop_columns(["parse_failed"])
    assert results(sides)["overall"]["total_parse_failures"] == 2
    assert "total_parse_failures" not in results(table)["overall"]
    unmarked = generative.set_column(generative.column_names.index("parse_failed"), "parse_failed",
                                     pa.array([False, True, False, False, False, False]))
    unmarked = unmarked.drop_columns(["rejected_parse_failed"])
    with pytest.raises(ScoresError, match=r"pair f: 'rejected_score' is empty, and it is not marked as a parse failure"):
        results(unmarked)
    with pytest.raises(ScoresError, match=r"pair b: 'chosen_score' is empty \(1 such values\)"):
        results(generative.drop_columns(["parse_failed", "chosen_parse_failed", "rejected_parse_failed"]))


# --- reading benchmarks --------------------------------------------------------------------------------------


def test_benchmark_reads_the_same_from_parquet_jsonl_and_a_datasets_folder(tmp_path):
    import datasets

    parquet = write_bench(tmp_path / "crb.parquet")
    jsonl = tmp_path / "crb.jsonl"
    jsonl.write_text("".join(json.dumps({c: getattr(p, c) for c in BENCH_COLUMNS}) + "\n" for p in BENCH))
    folder = tmp_path / "crb_ds"
    datasets.DatasetDict({"Full": datasets.Dataset.from_parquet(parquet)}).save_to_disk(str(folder))
    assert read_benchmark(parquet) == BENCH
    assert read_benchmark(str(jsonl)) == BENCH
    assert read_benchmark(str(folder), split="Full") == BENCH


def test_unreadable_benchmarks_fail_naming_the_file_and_row(tmp_path):
    thin = tmp_path / "thin.parquet"
    pq.write_table(pa.table({"prompt": ["p"], "chosen": ["c"], "rejected": ["r"], "id": ["x"]}), thin)
    with pytest.raises(BenchmarkError, match=r"thin\.parquet: no column 'language', 'aspect', 'subset'"):
        read_benchmark(str(thin))
    lines = tmp_path / "crb.jsonl"
    good = json.dumps({c: getattr(BENCH[0], c) for c in BENCH_COLUMNS})
    lines.write_text(good + "\n{not json\n")
    with pytest.raises(BenchmarkError, match=r"crb\.jsonl, line 2: not valid JSON"):
        read_benchmark(str(lines))
    nulls = tmp_path / "nulls.jsonl"
    nulls.write_text(json.dumps({**json.loads(good), "id": "crb-9", "chosen": None}) + "\n")
    with pytest.raises(BenchmarkError, match=r"nulls\.jsonl, line 1 \(pair crb-9\): `chosen` is NoneType"):
        read_benchmark(str(nulls))
    twice = tmp_path / "snapshot"
    (twice / "Full").mkdir(parents=True)
    (twice / "Stratified_Language").mkdir()
    write_bench(twice / "Full" / "Full-00000-of-00001.parquet")
    write_bench(twice / "Stratified_Language" / "Python-00000-of-00001.parquet", BENCH[:1])
    with pytest.raises(BenchmarkError, match=r"pair id 'crb-0' appears twice: .*Full-00000-of-00001\.parquet, row 1 "
                                             r"and .*Python-00000-of-00001\.parquet, row 1"):
        read_benchmark(str(twice))
    assert read_benchmark(str(twice / "Full")) == BENCH


# --- conversations -------------------------------------------------------------------------------------------


def test_system_modes_render_different_conversations(reward_model):
    tokenizer, example = reward_model["tokenizer"], BENCH[1]  # a Runtime_Efficiency pair
    texts = {mode: BenchPairEncoder(tokenizer, mode, 1024).render(example, example.chosen)
             for mode in ("none", "full", "per-criterion")}
    assert texts["none"] == (f"<|im_start|>user\n{example.prompt}<|im_end|>\n"
                             f"<|im_start|>assistant\n{example.chosen}<|im_end|>\n")
    assert texts["full"].startswith("<|im_start|>system\nYou review code.") and texts["full"].endswith(texts["none"])
    assert all(f"- {criterion}:" in texts["full"] for criterion in CRITERIA)
    assert "better in runtime efficiency" in texts["per-criterion"] and texts["per-criterion"].endswith(texts["none"])
    assert not any(f"{c}:" in texts["per-criterion"] for c in CRITERIA)
    with pytest.raises(KeyError, match="unknown system prompt mode 'aspect'; known: none, full, per-criterion"):
        BenchPairEncoder(tokenizer, "aspect", 1024)
    with pytest.raises(PairError, match="pair nl-1: aspect 'Helpfulness' is not one of the criteria"):
        BenchPairEncoder(tokenizer, "per-criterion", 1024).encode_all([pair("nl-1", "NL", "Helpfulness", "X")])


def test_long_prompts_lose_their_start_and_responses_that_do_not_fit_are_named(reward_model):
    encoder = BenchPairEncoder(reward_model["tokenizer"], "none", 96)
    long = BENCH[5]
    encoded = encoder.encode(long)
    assert encoded.prompt_tokens_cut > 0
    assert max(len(encoded.chosen), len(encoded.rejected)) <= 96
    text = reward_model["tokenizer"].decode(encoded.chosen)
    assert text.endswith(f"<|im_start|>assistant\n{long.chosen}<|im_end|>\n")  # the response is whole
    assert text.split("<|im_end|>")[0].endswith("Write a function that returns the mean of a list.")  # the prompt's end stays
    assert reward_model["tokenizer"].decode(encoded.rejected).split("<|im_end|>")[0] == text.split("<|im_end|>")[0]
    huge = pair("crb-huge", "Python", "Functional_Correctness", "X", MEAN * 40)
    with pytest.raises(PairError, match=r"1 of 2 pairs cannot be scored:\n  pair crb-huge: \d+ tokens with an empty "
                                        r"prompt, over max_length 96"):
        encoder.encode_all([long, huge])


# --- scoring -------------------------------------------------------------------------------------------------


def test_scoring_end_to_end_in_every_system_mode(reward_model, tmp_path):
    bench = write_bench(tmp_path / "crb.parquet")
    tables = {mode: score(reward_model["rm"], bench, mode, batch_size=3, max_length=1024, device="cpu")
              for mode in ("none", "full", "per-criterion")}
    for mode, table in tables.items():
        assert table.column_names == ["chosen_score", "rejected_score", "correct", "score_diff",
                                      "language", "aspect", "subset", "id"]
        rows = table.to_pylist()
        assert [r["id"] for r in rows] == [p.id for p in BENCH]  # benchmark order, nothing dropped
        assert [(r["language"], r["aspect"], r["subset"]) for r in rows] == [(p.language, p.aspect, p.subset) for p in BENCH]
        assert all(r["correct"] == (r["chosen_score"] > r["rejected_score"]) for r in rows)
        assert all(r["score_diff"] == r["chosen_score"] - r["rejected_score"] for r in rows)
        assert rows[4]["chosen_score"] == rows[4]["rejected_score"] and not rows[4]["correct"]  # identical sides
        assert results(table)["overall"]["ties"] >= 1
        assert results(table)["run"]["system_mode"] == mode
    chosen = {mode: t.column("chosen_score").to_pylist() for mode, t in tables.items()}
    assert chosen["none"] != chosen["full"] != chosen["per-criterion"] != chosen["none"]
    # One conversation per forward pass gives the same scores: padding does not move them.
    single = score(reward_model["rm"], bench, "per-criterion", batch_size=1, max_length=1024, device="cpu")
    assert single.column("chosen_score").to_pylist() == pytest.approx(chosen["per-criterion"], abs=1e-5)
    assert single.column("rejected_score").to_pylist() == pytest.approx(
        tables["per-criterion"].column("rejected_score").to_pylist(), abs=1e-5)


def test_evaluate_writes_scores_and_results_that_recompute(reward_model, tmp_path):
    config = EvalConfig(model=reward_model["rm"], benchmark=write_bench(tmp_path / "crb.parquet"),
                        system_mode="full", batch_size=4, max_length=1024, device="cpu")
    summary = evaluate(config, tmp_path / "out")
    assert json.loads((tmp_path / "out" / RESULTS_FILE).read_text()) == summary
    assert recompute(tmp_path / "out" / SCORES_FILE) == summary
    assert summary["overall"]["total_examples"] == len(BENCH)
    assert summary["run"] | {"benchmark": None} == {
        "model": reward_model["rm"], "benchmark": None, "split": None, "system_mode": "full", "max_length": 1024,
        "batch_size": 4, "dtype": "float32", "device": "cpu", "pairs": len(BENCH), "prompts_cut": 0}
    assert set(summary["by_language"]) == {"Python", "Cpp", "Go", "CSharp", "Ruby"}  # the benchmark's spellings


def test_a_failed_batch_names_its_pairs(reward_model, tmp_path):
    from transformers import AutoTokenizer

    model_dir = tmp_path / "rm"
    shutil.copytree(reward_model["rm"], model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.add_tokens(["<|beyond|>"])  # an id the model's embedding table does not have
    tokenizer.save_pretrained(model_dir)
    bad = pair("crb-bad", "Go", "Functional_Correctness", "X", ADD + "<|beyond|>", ADD_WRONG)
    bench = write_bench(tmp_path / "crb.parquet", [BENCH[0], bad])
    with pytest.raises(ScoringError, match=r"batch \d of 2 failed \(IndexError: .*\); its pairs: (crb-0, )?crb-bad$"):
        score(str(model_dir), bench, "none", batch_size=2, max_length=1024, device="cpu")


def test_a_folder_that_is_not_a_reward_model_is_refused(reward_model, tmp_path):
    bench = write_bench(tmp_path / "crb.parquet")
    with pytest.raises(ModelError, match="holds LlamaForCausalLM, not a sequence classifier"):
        score(reward_model["lm"], bench, device="cpu")
    with pytest.raises(ModelError, match="no such folder"):
        score(str(tmp_path / "nowhere"), bench, device="cpu")
    with pytest.raises(ModelError, match="max_length 4096 is over the model's 1024 positions"):
        score(reward_model["rm"], bench, max_length=4096, device="cpu")


def test_cli_eval_and_the_eval_stage_write_the_same_results(reward_model, tmp_path):
    from typer.testing import CliRunner

    from pipelines.cli import app
    from pipelines.run.config import RunConfig, import_builtin_stages
    from pipelines.run.orchestrator import run

    bench = write_bench(tmp_path / "crb.parquet")
    result = CliRunner().invoke(app, ["eval", "--model", reward_model["rm"], "--bench", bench, "--out", str(tmp_path / "cli"),
                                      "--device", "cpu", "--max-length", "1024"])
    assert result.exit_code == 0, result.output
    assert "accuracy" in result.output and (tmp_path / "cli" / SCORES_FILE).is_file()
    again = CliRunner().invoke(app, ["eval", "--scores", str(tmp_path / "cli" / SCORES_FILE), "--out", str(tmp_path / "re")])
    assert again.exit_code == 0, again.output
    cli_results = json.loads((tmp_path / "cli" / RESULTS_FILE).read_text())
    assert json.loads((tmp_path / "re" / RESULTS_FILE).read_text())["overall"] == cli_results["overall"]

    import_builtin_stages()
    config = RunConfig(run_dir=str(tmp_path / "run"), stages={"eval": {"inputs": [], "model": reward_model["rm"], "benchmark": bench,
                                                                     "device": "cpu", "max_length": 1024}})
    (outcome,) = run(config)
    stage_results = json.loads((tmp_path / "run" / "eval" / RESULTS_FILE).read_text())
    assert stage_results["overall"]["accuracy"] == cli_results["overall"]["accuracy"]
    assert outcome.manifest.schema == "EvalResults v1" and outcome.manifest.records_in == len(BENCH)
    assert run(config)[0].skipped
