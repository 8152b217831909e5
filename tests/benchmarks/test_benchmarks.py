"""Every benchmark runs at a tiny size and reports its figures, so that a change to the code it measures
cannot break it unnoticed (the figures themselves are meaningless at this size)."""

from __future__ import annotations

import json
import subprocess

import pyarrow.parquet as pq

from benchmarks import (
    criteria_classifier,
    dedup_throughput,
    gpu_train_step,
    humaneval_yield,
    judge_throughput,
    mine_throughput,
    parse_throughput,
    scale,
)
from parsers import languages
from schemas import CRITERIA


def test_parse_throughput_reports_every_language(tmp_path):
    results = parse_throughput.main(["--mb", "0.01", "--repeats", "1", "--json", str(tmp_path / "parse.json")])

    assert [r["language"] for r in results] == [spec.name for spec in languages()]
    assert all(r["files"] > 0 and r["corpus"] in ("real", "generated") and r["ratio"] > 0 for r in results)
    assert json.loads((tmp_path / "parse.json").read_text()) == results


def test_mine_throughput_compares_codepref_plain_git_and_the_reference_fetch(tmp_path):
    result = mine_throughput.main(["--commits", "40", "--sample", "2", "--no-pydriller", "--work", str(tmp_path / "work"),
                                   "--json", str(tmp_path / "mine.json")])

    assert set(result["machine"]) >= {"nproc", "load_start", "load_end"}
    (entry,) = result["repositories"]
    methods = entry["methods"]
    assert set(methods) == set(mine_throughput.METHODS) and methods["pydriller"] == {"unavailable": "skipped (--no-pydriller)"}
    codepref, plain = methods["codepref"], methods["plain_git"]
    assert codepref["examined"] == plain["examined"] == 40  # every commit of the history, by both
    assert 0 < codepref["kept"] <= plain["kept"]  # the same cheap rule, then codepref's further rules
    for figures in (codepref, plain):
        assert figures["commits_per_s_per_core"] > 0 and figures["peak_rss_mb"] > 0 and figures["ratio_to_plain_git"] > 0
    assert plain["ratio_to_plain_git"] == 1
    assert codepref["ratio_to_plain_git_write"] > 0 and "ratio_to_plain_git_write" not in plain
    floor = result["process_floor"]
    assert floor["peak_rss_mb"] > 0 and floor["cpu_seconds"] > 0 and "1 + workers" in floor["note"]
    assert "| process_floor |" in mine_throughput.table(result) and "| plain_git_write |" in mine_throughput.table(result)
    assert entry["reference_fetch"]["commits"] == 2 and entry["reference_fetch"]["codepref_speedup_walked"] > 0
    assert json.loads((tmp_path / "mine.json").read_text()) == result

    # The write pass examines and keeps what the plain pass does, and its Parquet holds each kept commit's two blobs.
    write = methods["plain_git_write"]
    assert (write["examined"], write["kept"], write["bytes_read"]) == (plain["examined"], plain["kept"], plain["bytes_read"])
    assert write["written"] == write["kept"] > 0 and write["undecodable"] == 0 and write["ratio_to_plain_git"] > 0
    (part,) = (tmp_path / "work" / "w0" / "plain_git_write").iterdir()
    parquet = pq.ParquetFile(part)
    assert parquet.metadata.row_group(0).column(0).compression == "ZSTD"
    rows = parquet.read().to_pylist()
    assert len(rows) == write["kept"] and len({row["commit"] for row in rows}) == len(rows)
    repo = tmp_path / "work" / "w0" / "synth.git"
    for row in rows:
        commit, path = row["commit"], row["path"]
        assert row["parent"] == git(repo, "rev-parse", f"{commit}^").strip()
        assert (row["before"], row["after"]) == (git(repo, "show", f"{commit}^:{path}"), git(repo, "show", f"{commit}:{path}"))
        assert row["message"] == "" and row["repo"] == str(repo)


def git(repo, *args: str) -> str:
    """git's output, decoded as is (no newline translation)."""
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, check=True).stdout.decode()


def test_dedup_throughput_reports_signing_accuracy_and_the_whole_stage(tmp_path):
    result = dedup_throughput.main(["--docs", "60", "--sign-docs", "30", "--sample", "30", "--workers", "1",
                                    "--json", str(tmp_path / "dedup.json")])

    assert result["signing"]["codepref_vectorised_docs_s"] > 0 and 0 <= result["signing"]["mae_codepref"] < 1
    assert result["accuracy"]["true_pairs"] > 0 and result["accuracy"]["recall"] > 0
    stage = result["stage"]
    assert stage["kept"] + sum(stage["dropped"].values()) == 60 and stage["cluster_rows"] > 0
    assert json.loads((tmp_path / "dedup.json").read_text())["stage"]["kept"] == stage["kept"]
    floor = result["process_floor"]
    assert floor["peak_rss_mb"] > 0 and floor["cpu_seconds"] > 0 and "pipelines.dedup.stage" in floor["command"]
    assert "| process_floor |" in dedup_throughput.table(result["methods"], floor)


def test_humaneval_yield_reports_verified_pairs(tmp_path):
    result = humaneval_yield.main(["--workers", "1", "--problems", "2", "--json", str(tmp_path / "yield.json")])

    assert result["problems"] == 2 and result["verified_pairs"] >= 1 and result["operators"]
    assert json.loads((tmp_path / "yield.json").read_text()) == result


def test_criteria_classifier_scores_both_modes(tmp_path):
    summary = criteria_classifier.main(["--repeats", "1", "--examples", "1", "--json", str(tmp_path / "criteria.json")])

    assert [r["mode"] for r in summary["results"]] == ["unmasked", "masked"]
    assert all(set(r["criteria"]) == set(CRITERIA) and r["labelled"] > 0 for r in summary["results"])
    assert (tmp_path / "criteria.json").is_file()


def test_gpu_train_step_times_the_cpu_path(tmp_path):
    summary = gpu_train_step.main(["--device", "cpu", "--steps", "2", "--warmup", "1", "--pairs", "8", "--batch-size", "2",
                                   "--max-length", "64", "--threads", "1", "--json", str(tmp_path / "train.json")])

    (result,) = summary["results"]
    assert result["device"] == "cpu" and "error" not in result, result
    assert result["steps_timed"] == 2 and result["ms_per_step_median"] > 0 and result["final_loss"] is not None
    assert json.loads((tmp_path / "train.json").read_text()) == summary


def test_scale_plain_loop_decides_as_the_stages_do(tmp_path):
    """The plain-loop baseline drives the stages' DoFns itself: it must keep and drop exactly what the stages do."""
    out = tmp_path / "results.json"
    results = scale.main(["--sizes", "24", "--plain-up-to", "24", "--judge-sample", "4", "--jobs", "1", "--workers", "1",
                          "--num-shards", "2", "--work", str(tmp_path / "work"), "--json", str(out)])

    entry = results["sizes"]["24"]
    for stage in scale.STAGES:
        assert entry[stage]["beam"]["records_in"] > 0 and entry[stage]["plain"]["records_in"] == entry[stage]["beam"]["records_in"]
        assert entry[stage]["same_output"] == {"kept_identical": True, "drops_identical": True}, stage
    assert results["corpus"]["pairs"] == 24 and results["judge"]["prompt_tokens"]["pairs"] == 4
    assert "#### 24 pairs" in scale.markdown(results)
    assert scale.main(["--render", str(out)]) == json.loads(out.read_text())


def test_judge_throughput_on_the_shared_engine(tmp_path, smollm2, vllm_engine):
    """Uses the session's engine (the benchmark acquires the process's shared backend for the same model)."""
    result = judge_throughput.main(["--model", smollm2, "--pairs", "1", "--n", "2", "--max-tokens", "4", "--repeats", "1",
                                    "--constrained", "--json", str(tmp_path / "judge.json")])

    assert result["answers_per_pair"] == 4 and all(chars > 0 for chars in result["answer_chars_n_in_one"])
    assert result["pairs_per_minute_n_in_one"] > 0 and result["speedup_median"] > 0
    assert json.loads((tmp_path / "judge.json").read_text()) == result
