"""The `assemble` stage: final filters, decontamination report, system prompts, the corpus and its card."""

from __future__ import annotations

import collections
import dataclasses
import json
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.io.filesystems import FileSystems

from pipelines.assemble.decontaminate import (
    BenchmarkError,
    BenchmarkFile,
    BenchmarkIndex,
    benchmark_prompts,
    words,
)
from pipelines.assemble.filters import (
    EnglishPrompt,
    TokenLength,
    byte_level_slack,
    prose,
)
from pipelines.assemble.system_prompts import SystemPromptShares, draw
from pipelines.run.config import (
    ConfigError,
    RunConfig,
    check_stages,
    import_builtin_stages,
)
from pipelines.run.orchestrator import check_run, run
from schemas import (
    ASPECTS,
    CORPUS_COLUMNS,
    LANGUAGES,
    Candidate,
    ContaminationReport,
    CorpusRow,
    Drop,
    JudgedPair,
    OrderCounts,
)
from storage import StageManifest, read_rows
from tests.support import memory_fs
from tests.support.stage_fixtures import candidate, write_stage

BENCHMARK_PROMPT = ("Write a function that takes a list of integers and returns the length of the longest strictly "
                    "increasing subsequence found anywhere in the list.")

GOOD = "def mean(xs):\n    if not xs:\n        return 0.0\n    return sum(xs) / len(xs)\n"
BAD = "def mean(xs):\n    return sum(xs) / len(xs)\n"


def judged(pair: Candidate, kept: bool = True) -> JudgedPair:
    counts = OrderCounts(matches=3, contradictions=1)
    return JudgedPair(pair.pair_id, pair, [], counts, counts, 0.5, kept, "kept" if kept else "too_few_matches: 1 < 6")


def variant(i: int) -> tuple[str, str]:
    """Distinct, deep enough code per pair (so the final dedup keeps them apart)."""
    name = ["alpha", "beta", "gamma", "delta", "omega"][i]
    return (f"def {name}(values):\n    total = 0\n    for v in values:\n        if v > {i}:\n            total += v * {i + 2}\n    return total\n",
            f"def {name}(values):\n    return sum(values) * {i + 7}\n")


def assemble_inputs(tmp_path) -> tuple[list[JudgedPair], dict]:
    """Judged pairs that take every drop path, and the assemble config (its benchmark file written in `tmp_path`)."""
    pairs = []
    for i in range(3):
        chosen, rejected = variant(i)
        pairs.append(judged(candidate(f"ok{i}", chosen, rejected, prompt=f"Compute the weighted total of values above {i}.")))
    pairs += [
        judged(candidate("not-kept", GOOD, BAD), kept=False),
        judged(candidate("long", GOOD + "# padding words here\n" * 400, BAD)),
        judged(candidate("shallow", "pass\n", "x\n")),  # module > pass_statement: depth 2
        judged(candidate("german", *variant(3), prompt="Schreiben Sie eine Funktion, die den Mittelwert einer Liste berechnet.")),
        judged(candidate("leaked", *variant(4), prompt=f"Task: {BENCHMARK_PROMPT.upper()} Use Python.")),
        judged(candidate("rust", GOOD, BAD, language="Rust")),
        judged(candidate("dup-of-ok0", *variant(0), committed_at=1_700_000_000)),  # ok0 is earlier: it stays
    ]
    bench = tmp_path / "crb.parquet"
    pq.write_table(pa.table({"prompt": [BENCHMARK_PROMPT, "Reverse a string."], "chosen": ["a", "b"]}), bench)
    return pairs, {"benchmarks": [{"name": "CRB", "path": str(bench)}], "max_tokens": 600}


@pytest.fixture
def assembled(tmp_path):
    import_builtin_stages()
    run_dir = tmp_path / "run"
    pairs, stage = assemble_inputs(tmp_path)
    write_stage(run_dir, "label", pairs, JudgedPair)
    config = RunConfig(run_dir=str(run_dir), num_shards=2, runner={"running_mode": "in_memory", "workers": 1},
                       stages={"assemble": stage})
    (outcome,) = run(config)
    return run_dir, config, outcome


def test_assemble_filters_decontaminates_and_writes_the_published_layout(assembled):
    run_dir, config, outcome = assembled
    out = run_dir / "assemble"
    rows = {row["idx"]: row for row in read_rows(str(out), CorpusRow)}
    assert set(rows) == {"ok0", "ok1", "ok2"}
    drops = {d["key"]: d["reason"] for d in read_rows(str(out / "_dropped"), Drop)}
    assert drops == {"not-kept": "not_kept_by_judges", "long": "too_many_tokens", "shallow": "too_shallow",
                     "german": "prompt_not_english", "leaked": "benchmark_contamination",
                     "rust": "language_not_in_corpus_labels", "dup-of-ok0": "exact_duplicate"}
    assert outcome.manifest.dropped["benchmark_contamination"] == 1 and outcome.manifest.records_out == 3

    row = rows["ok1"]
    assert LANGUAGES.names[row["language"]] == "Python" and ASPECTS.names[row["aspect"]] == "Functional Correctness"
    assert row["input"] == "Compute the weighted total of values above 1." and row["votes_matches"] == 6
    assert row["origin"]["commit"] == "ok1" and row["source"] == "commit" and row["verification"] is None

    (report,) = read_rows(str(out / "decontamination"), ContaminationReport)
    assert report["benchmark"] == "CRB" and report["prompts_checked"] == 2 and report["pairs_removed"] == 1
    assert report["examples"] == ["leaked: 'write a function that takes a list of integers and returns the length'"]

    import datasets

    corpus = datasets.load_dataset("parquet", data_files=sorted(str(p) for p in out.glob("part-*.parquet")), split="train")
    assert tuple(corpus.column_names[:8]) == CORPUS_COLUMNS == ("system", "input", "chosen", "rejected", "language", "aspect",
                                                                  "source", "idx")
    assert corpus.features["language"].names == ["JavaScript", "Python", "Ruby", "C++", "C", "Go", "Java", "C#", "NL"]
    assert corpus.features["aspect"].names == ["Readability and Maintainability", "Runtime Efficiency", "Security Hardness",
                                               "Functional Correctness", "Memory Efficiency", "Helpfulness", "Harmlessness"]

    card = (out / "README.md").read_text()
    assert "## Funnel" in card and "| assemble | 10 | 3 |" in card and "benchmark_contamination 1" in card
    assert "| commit | Functional Correctness | Python | 3 |" in card and "| CRB | 2 | 1 |" in card
    assert "README.md" in StageManifest.read(str(out)).files

    (again,) = run(config)
    assert again.skipped  # a finished assemble stage is not redone


def copy_into(source: Path, target: str) -> None:
    """Every file under the local folder `source`, written under `target` through Beam's FileSystems."""
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        with FileSystems.create(FileSystems.join(target, *path.relative_to(source).parts)) as handle:
            handle.write(path.read_bytes())


def files_under(root: str) -> dict[str, bytes]:
    """Relative name -> contents of every file under `root`, read through Beam's FileSystems."""
    found = {}
    for match in FileSystems.match([FileSystems.join(root, "**")])[0].metadata_list:
        with FileSystems.open(match.path) as handle:
            found[match.path[len(root):].lstrip("/")] = handle.read()
    return found


def test_assemble_on_a_run_dir_only_beam_file_systems_reach_writes_what_a_local_run_does(assembled, tmp_path):
    """run_dir on an object store only Beam's FileSystems reach (`memfs://`, in this process's memory, so the runner
    runs in memory): the shards, the decontamination report, the drops and the card are a local run's."""
    local_dir, local_config, local = assembled
    run_dir = f"{memory_fs.SCHEME}://{tmp_path.name}/run"
    copy_into(local_dir / "label", FileSystems.join(run_dir, "label"))
    config = RunConfig(run_dir=run_dir, num_shards=2, runner={"running_mode": "in_memory", "workers": 1},
                       stages={"assemble": local_config.stages["assemble"]})
    check_run(config)  # `config check` no longer refuses assemble on an object store

    (outcome,) = run(config)

    assert outcome.manifest.files == local.manifest.files and outcome.manifest.dropped == local.manifest.dropped
    written = files_under(FileSystems.join(run_dir, "assemble"))
    expected = files_under(str(local_dir / "assemble"))
    assert written.keys() == expected.keys() and "README.md" in written and "decontamination/part-00000-of-00002.parquet" in written
    generated = re.compile(rb"Generated by codepref on \d{4}-\d{2}-\d{2}")  # the two runs may straddle midnight
    for name in sorted(set(expected) - {"_manifest.json"}):  # the manifest says when the stage ran
        assert generated.sub(b"", written[name]) == generated.sub(b"", expected[name]), name
    assert b"| commit | Functional Correctness | Python | 3 |" in written["README.md"]


def test_holdout_pairs_leave_the_corpus_in_the_benchmark_layout(tmp_path):
    from pipelines.eval.benchmark import read_benchmark

    import_builtin_stages()
    run_dir = tmp_path / "run"
    pairs = [judged(candidate(f"p{i}", *variant(i), prompt=f"Compute the weighted total of values above {i}.")) for i in range(5)]
    write_stage(run_dir, "label", pairs, JudgedPair)
    config = RunConfig(run_dir=str(run_dir), num_shards=2, runner={"running_mode": "in_memory", "workers": 1},
                       stages={"assemble": {"holdout": 2}})
    (outcome,) = run(config)
    corpus = {row["idx"] for row in read_rows(str(run_dir / "assemble"), CorpusRow)}
    held = read_benchmark(str(run_dir / "assemble" / "holdout"))
    assert len(corpus) == 3 and len(held) == 2 and not corpus & {pair.id for pair in held}
    assert outcome.manifest.counters["held_out"] == 2 and outcome.manifest.records_out == 3
    assert {(pair.language, pair.aspect, pair.subset) for pair in held} == {("Python", "Functional Correctness", "commit")}
    assert {pair.prompt for pair in held} < {pair.candidate.prompt for pair in pairs}
    assert "2 pairs are held out of the corpus" in (run_dir / "assemble" / "README.md").read_text()

    again = RunConfig(run_dir=str(tmp_path / "again"), num_shards=3, runner={"running_mode": "in_memory", "workers": 1},
                      stages={"assemble": {"holdout": 2}})
    write_stage(tmp_path / "again", "label", pairs, JudgedPair)
    run(again)
    assert {pair.id for pair in read_benchmark(str(tmp_path / "again" / "assemble" / "holdout"))} == {pair.id for pair in held}


def test_system_prompt_shares_on_10k_pairs_and_identical_across_reruns():
    shares = SystemPromptShares(none=0.15, criterion=0.65, all=0.20)
    first = [draw(f"commit/octo/{i}/x", "Memory Efficiency", shares) for i in range(10_000)]
    counts = collections.Counter(mode for mode, _ in first)
    for mode, share in (("none", 0.15), ("criterion", 0.65), ("all", 0.20)):
        assert abs(counts[mode] / 10_000 - share) <= 0.02, counts
    assert first == [draw(f"commit/octo/{i}/x", "Memory Efficiency", shares) for i in range(10_000)]
    texts = {text for mode, text in first if mode == "all"}
    assert len(texts) > 20  # the five criteria come in many orders
    assert all(text.count("\n- ") == 5 for text in texts)
    assert {text for mode, text in first if mode == "none"} == {""}
    with pytest.raises(ValueError, match="sum to 1"):
        SystemPromptShares(none=0.5, criterion=0.5, all=0.5)


def test_decontamination_index_matches_across_case_and_punctuation(tmp_path):
    path = tmp_path / "bench.jsonl"
    path.write_text("\n".join(json.dumps({"question": q}) for q in [BENCHMARK_PROMPT, "Short one."]) + "\n")
    index = BenchmarkIndex([BenchmarkFile(name="B", path=str(path), column="question")], n=13)
    assert index.prompts == {"B": 2}
    twelve = " ".join(words(BENCHMARK_PROMPT)[:12])
    assert index.find(f"Please: {twelve}!") is None  # 12 shared words are not enough
    hit = index.find(BENCHMARK_PROMPT.replace(" ", "  ").replace("list", "LIST,"))
    assert hit is not None and hit.benchmark == "B"
    with pytest.raises(BenchmarkError, match="row 1 has no 'prompt'"):
        BenchmarkIndex([BenchmarkFile(name="B", path=str(path))], n=13)


def test_benchmarks_on_an_object_store_are_read_as_local_ones(tmp_path):
    """A benchmark file, and a folder of them, on a store only Beam's FileSystems reach: the same prompts as on a
    local disk, and `config check` finds them there (or says they are not)."""
    local = tmp_path / "bench"
    local.mkdir()
    pq.write_table(pa.table({"prompt": [BENCHMARK_PROMPT, "Reverse a string."]}), local / "crb.parquet")
    (local / "more.jsonl").write_text(json.dumps({"prompt": "Sort the list in place."}) + "\n")
    (local / "notes.txt").write_text("not a benchmark")
    store = f"{memory_fs.SCHEME}://{tmp_path.name}/bench"
    copy_into(local, store)

    folder_local, folder_store = BenchmarkFile(name="B", path=str(local)), BenchmarkFile(name="B", path=store)
    assert benchmark_prompts(folder_store) == benchmark_prompts(folder_local) == [BENCHMARK_PROMPT, "Reverse a string.",
                                                                                  "Sort the list in place."]
    one = BenchmarkFile(name="C", path=f"{store}/crb.parquet")
    assert benchmark_prompts(one) == [BENCHMARK_PROMPT, "Reverse a string."]
    assert BenchmarkIndex([one], n=13).find(BENCHMARK_PROMPT.upper()) is not None

    import_builtin_stages()
    check_stages(RunConfig(run_dir=f"{memory_fs.SCHEME}://{tmp_path.name}/run",
                           stages={"assemble": {"benchmarks": [folder_store.model_dump(), one.model_dump()]}}))
    gone = f"{memory_fs.SCHEME}://{tmp_path.name}/nothing"
    with pytest.raises(ConfigError, match=rf"stages\.assemble\.benchmarks\[0\] \(gone\)\.path: '{gone}' does not exist"):
        check_stages(RunConfig(run_dir=str(tmp_path / "run"), stages={"assemble": {"benchmarks": [{"name": "gone", "path": gone}]}}))


def test_token_length_byte_shortcut_decides_as_the_tokenizer_does():
    """Pairs whose bytes fit pass unencoded; at the exact token limit and one below it, the decisions are the encoder's."""
    texts = [GOOD, BAD, "数组的中位数 " * 40, "emoji 🎉🙂 " * 30, "x=1\n" * 200, "\t\t  \u00a0 é" * 50, "<|im_start|>user " * 20]
    check = TokenLength("smollm2", 4096)
    check.setup()
    assert check.slack == 0
    encode = check.tokenizer.encode
    for text in texts:
        assert len(encode(text, add_special_tokens=False).ids) <= len(text.encode("utf-8"))
    for i, chosen in enumerate(texts):
        record = {"pair_id": f"p{i}", "system": "You are a careful reviewer.", "prompt": "Fix it.", "chosen": chosen, "rejected": texts[i - 1]}
        shared = len(encode("You are a careful reviewer.\nFix it.", add_special_tokens=False).ids)
        exact = shared + max(len(encode(record[side], add_special_tokens=False).ids) for side in ("chosen", "rejected"))
        check.max_tokens = exact
        assert check.check(record) is None
        check.max_tokens = exact - 1
        rejection = check.check(record)
        assert rejection is not None and rejection.reason == "too_many_tokens" and f"{exact} tokens > {exact - 1}" in rejection.detail


def test_byte_level_slack_only_where_tokens_are_bounded_by_bytes():
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

    def spec(model, normalizer=None, pre=None) -> str:
        tokenizer = Tokenizer(model)
        if normalizer is not None:
            tokenizer.normalizer = normalizer
        if pre is not None:
            tokenizer.pre_tokenizer = pre
        return tokenizer.to_str()

    assert byte_level_slack(spec(models.BPE(), pre=pre_tokenizers.ByteLevel(add_prefix_space=False))) == 0
    assert byte_level_slack(spec(models.BPE(), pre=pre_tokenizers.ByteLevel(add_prefix_space=True))) == 1
    sequence = pre_tokenizers.Sequence([pre_tokenizers.Digits(), pre_tokenizers.ByteLevel(add_prefix_space=False)])
    assert byte_level_slack(spec(models.BPE(), pre=sequence)) == 0
    assert byte_level_slack(spec(models.BPE(), pre=pre_tokenizers.Metaspace())) is None  # SentencePiece-like: "▁" tokens
    assert byte_level_slack(spec(models.BPE(), normalizers.NFKC(), pre_tokenizers.ByteLevel())) is None  # NFKC expands text
    assert byte_level_slack(spec(models.WordLevel({"a": 0}, unk_token="a"), pre=pre_tokenizers.ByteLevel())) is None


def test_english_detection_reads_prose_not_code():
    assert prose("Fix this:\n```python\nx = 1\n```\nand `y`") == "Fix this:\n \nand  "
    check = EnglishPrompt()
    check.setup()
    row = {"pair_id": "p"}
    assert check.check({**row, "prompt": "Write a function that returns the median of a list of numbers."}) is None
    rejection = check.check({**row, "prompt": "Écrivez une fonction qui renvoie la médiane d'une liste de nombres."})
    assert rejection is not None and rejection.reason == "prompt_not_english"
    assert check.check({**row, "prompt": "```python\nprint('hola mundo, esto es código')\n```"}) is None  # too little prose
    assert check.check({**row, "prompt": "Sum the values above zero."}) is None  # unsure (langid says 'vec' at 0.11): kept


def test_cli_assemble_reads_a_label_directory_and_names_benchmarks(tmp_path):
    from typer.testing import CliRunner

    from pipelines.cli import app

    chosen, rejected = variant(0)
    label = write_stage(tmp_path / "run", "label", [judged(candidate("ok0", chosen, rejected, prompt="Sum the values above zero."))],
                        JudgedPair)
    bench = tmp_path / "bench.jsonl"
    bench.write_text(json.dumps({"prompt": BENCHMARK_PROMPT}) + "\n")
    out = tmp_path / "corpus"
    result = CliRunner().invoke(app, ["assemble", "--in", str(label), "--out", str(out), "--benchmarks", f"MyBench={bench}"])
    assert result.exit_code == 0, result.output
    assert "1 kept" in result.output and (out / "README.md").is_file()
    (report,) = read_rows(str(out / "decontamination"), ContaminationReport)
    assert report["benchmark"] == "MyBench" and report["pairs_removed"] == 0


def test_corpus_rows_and_card_say_who_labelled_them_and_that_a_judge_was_refused(tmp_path):
    """Two pairs labelled by execution, one by judges: each row's label_source, the card's shares, and the label
    manifest's refusal of a judge said in plain words."""
    from pipelines.label.qualify import QualifyConfig, Tally, qualify

    import_builtin_stages()
    run_dir = tmp_path / "run"
    pairs = []
    for i, source in enumerate(("execution", "execution", "judges")):
        chosen, rejected = variant(i)
        pair = judged(candidate(f"p{i}", chosen, rejected, prompt=f"Compute the weighted total of values above {i}."))
        pairs.append(dataclasses.replace(pair, label_source=source))
    write_stage(run_dir, "label", pairs, JudgedPair)
    manifest = StageManifest.read(str(run_dir / "label"))
    refused = qualify("smollm2", Tally(pairs=32, agree=1, against=30, consistent=1, votes=64, ties=8), QualifyConfig())
    manifest.report["qualification"] = {"status": "measured", "calibration_pairs": 32, "thresholds": QualifyConfig().model_dump(),
                                        "judges": [refused.as_dict()]}
    manifest.write(str(run_dir / "label"))
    config = RunConfig(run_dir=str(run_dir), num_shards=1, runner={"running_mode": "in_memory", "workers": 1},
                       stages={"assemble": {"max_tokens": 600}})
    run(config)
    rows = {row["idx"]: row["label_source"] for row in read_rows(str(run_dir / "assemble"), CorpusRow)}
    assert rows == {"p0": "execution", "p1": "execution", "p2": "judges"}
    card = (run_dir / "assemble" / "README.md").read_text()
    assert "| execution (the pair's tests: the chosen side passed, the rejected failed) | 2 | 66.7% |" in card
    assert "| LLM judges (votes in both orders) | 1 | 33.3% |" in card
    assert ("**Judge `smollm2` was NOT qualified to label** (agreement 0.03 < min_agreement 0.70; consistency 0.03 < "
            "min_consistency 0.60): no pair of this corpus was labelled by it.") in card
    assert "| smollm2 | 32 | 0.03 [0.01, 0.16] | 0.03 [0.01, 0.16] |" in card


RUST_CHOSEN = ("fn weighted(values: &[i32]) -> i32 {\n    let mut total = 0;\n    for v in values {\n        if *v > 2 {\n"
               "            total += v * 3;\n        }\n    }\n    total\n}\n")
RUST_REJECTED = "fn weighted(values: &[i32]) -> i32 {\n    values.iter().sum::<i32>() * 9\n}\n"


def run_with_rust(tmp_path, languages: str | None) -> tuple[Path, object]:
    """Assemble two Python pairs and one Rust pair in a run whose registry has Rust (the run config's `languages`)."""
    from tests.support.inputs import RUST_ENTRY

    import_builtin_stages()
    rust_file = tmp_path / "rust.yaml"
    rust_file.write_text(RUST_ENTRY)
    run_dir = tmp_path / "run"
    pairs = [judged(candidate(f"py{i}", *variant(i), prompt=f"Compute the weighted total of values above {i}."))
             for i in range(2)]
    pairs.append(judged(candidate("rs0", RUST_CHOSEN, RUST_REJECTED, language="Rust",
                                  prompt="Compute the weighted total of the values above two.")))
    write_stage(run_dir, "label", pairs, JudgedPair)
    stage = {"max_tokens": 600, **({"languages": languages} if languages else {})}
    config = RunConfig(run_dir=str(run_dir), num_shards=4, runner={"running_mode": "in_memory", "workers": 1},
                       languages=[str(rust_file)], stages={"assemble": stage})
    (outcome,) = run(config)
    return run_dir / "assemble", outcome


def test_corpus_language_vocabulary_grows_with_the_run_registry(tmp_path, isolated_user_config):
    import datasets

    out, outcome = run_with_rust(tmp_path, None)
    published = list(LANGUAGES.names)
    rows = {row["idx"]: row for row in read_rows(str(out), CorpusRow)}  # schema checks pass: same name and version
    assert set(rows) == {"py0", "py1", "rs0"}
    assert rows["rs0"]["language"] == 9 and rows["py0"]["language"] == LANGUAGES.index("Python") == 1

    shards = sorted(str(p) for p in out.glob("part-*.parquet"))
    assert len(shards) == 4  # at least one of them empty: it names the same vocabulary
    for shard in shards:
        assert pq.read_schema(shard).metadata[b"huggingface"] == pq.read_schema(shards[0]).metadata[b"huggingface"]
    corpus = datasets.load_dataset("parquet", data_files=shards, split="train")
    assert corpus.features["language"].names == [*published, "Rust"]
    by_idx = {row["idx"]: corpus.features["language"].int2str(row["language"]) for row in corpus}
    assert by_idx == {"py0": "Python", "py1": "Python", "rs0": "Rust"}

    assert outcome.manifest.report["languages"] == [*published, "Rust"]
    assert StageManifest.read(str(out)).report["languages"] == [*published, "Rust"]
    card = (out / "README.md").read_text()
    assert "## Vocabulary" in card and "| 9 | Rust | run registry |" in card and "| 1 | Python | published |" in card
    assert "| commit | Functional Correctness | Rust | 1 |" in card


def test_published_languages_keep_the_strict_themis_layout(tmp_path, isolated_user_config):
    from schemas import arrow_schema

    out, outcome = run_with_rust(tmp_path, "published")
    assert {row["idx"] for row in read_rows(str(out), CorpusRow)} == {"py0", "py1"}
    drops = {d["key"]: d["reason"] for d in read_rows(str(out / "_dropped"), Drop)}
    assert drops == {"rs0": "language_not_in_corpus_labels"}
    for shard in out.glob("part-*.parquet"):
        assert pq.read_schema(shard).metadata == arrow_schema(CorpusRow).metadata  # exactly today's metadata
    assert outcome.manifest.report["languages"] == list(LANGUAGES.names)
    card = (out / "README.md").read_text()
    assert "## Vocabulary" in card and "| 8 | NL | published |" in card and "Rust" not in card.split("## Vocabulary")[1].split("##")[0]


def test_assemble_languages_is_typed():
    from pipelines.assemble.stage import AssembleConfig

    assert AssembleConfig().languages == "registry"
    with pytest.raises(ValueError, match="registry"):
        AssembleConfig(languages="all")
