"""`codepref eval`: a reward model's (or an LLM judge's) preference accuracy on a CRB-format benchmark, and
`codepref eval report`: a leaderboard of any set of results, ours and published ones alike."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from pipelines.cli.console import fail, stdout

JUDGE_PANEL = "LLM judges (--judge)"
LABEL_SAMPLING = ("votes", "temperature", "top_p", "max_tokens", "constrained", "seed", "batch_size")  # taken from stages.label

app = typer.Typer(help="Preference accuracy on a CRB-format benchmark (`codepref eval --out DIR ...`), and leaderboards "
                  "(`codepref eval report`).", invoke_without_command=True)


@app.callback()
def eval_command(
    ctx: typer.Context,
    out: Annotated[Path | None, typer.Option(help="Folder for scores.parquet and results.json.")] = None,
    model: Annotated[str | None, typer.Option(help="Local reward model folder (AutoModelForSequenceClassification, one label).")] = None,
    bench: Annotated[str | None, typer.Option(help="CRB-format benchmark (prompt, chosen, rejected, language, aspect, subset, id).")] = None,
    scores: Annotated[Path | None, typer.Option(help="Recompute results.json from this scores table instead of scoring.")] = None,
    system_mode: Annotated[str, typer.Option(help="System prompt: none, full (all five criteria) or per-criterion (the row's aspect).")] = "none",
    split: Annotated[str | None, typer.Option(help="Split of a datasets folder that holds several (e.g. Full).")] = None,
    batch_size: Annotated[int, typer.Option(help="Conversations per forward pass.")] = 8,
    max_length: Annotated[int, typer.Option(help="Tokens per conversation.")] = 4096,
    device: Annotated[str, typer.Option(help="torch device: auto, cpu, cuda ...")] = "auto",
    judge: Annotated[str | None, typer.Option(
        help="Score an LLM judge instead: a judge's name in --config's stages.label.judges, or without --config a model "
             "('smollm2', a folder, or a served name with --base-url).", rich_help_panel=JUDGE_PANEL)] = None,
    mode: Annotated[str, typer.Option(help="pairwise (the label stage's judge template, both orders) or pointwise (a 1-10 rating "
                                           "per response).", rich_help_panel=JUDGE_PANEL)] = "pairwise",
    config_file: Annotated[Path | None, typer.Option("--config", help="Run config whose stages.label gives the judge entries and "
                                                                        "their sampling.", rich_help_panel=JUDGE_PANEL)] = None,
    backend: Annotated[str | None, typer.Option(help="Without --config: vllm, openai or transformers.", rich_help_panel=JUDGE_PANEL)] = None,
    base_url: Annotated[str | None, typer.Option(help="Without --config: an OpenAI-compatible server's /v1 address.",
                                                 rich_help_panel=JUDGE_PANEL)] = None,
    votes: Annotated[int | None, typer.Option(help="Pairwise: votes per pair, half per order; pointwise: ratings per response.",
                                              rich_help_panel=JUDGE_PANEL)] = None,
    cache: Annotated[str | None, typer.Option(help="Answer cache folder (default OUT/answers; a run's label_answers is reused).",
                                              rich_help_panel=JUDGE_PANEL)] = None,
) -> None:
    """Preference accuracy of a reward model (--model) or an LLM judge (--judge) on a CRB-format benchmark, by aspect,
    language and subset."""
    if ctx.invoked_subcommand is not None:
        return
    if out is None:
        fail("give --out (the folder for scores.parquet and results.json)")
    if judge is not None:
        if not bench:
            fail("give --bench, the CRB-format benchmark to score the judge on")
        _evaluate_judge(judge, bench, out, mode=mode, config_file=config_file, backend=backend, base_url=base_url, votes=votes,
                        cache=cache, split=split)
        return
    from pydantic import ValidationError

    from pipelines.eval import (
        RESULTS_FILE,
        BenchmarkError,
        EvalConfig,
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
            config = EvalConfig.model_validate({"inputs": [], "model": model, "benchmark": bench, "split": split, "system_mode": system_mode,
                                                "batch_size": batch_size, "max_length": max_length, "device": device})
            summary = evaluate(config, out)
        else:
            fail("give --model and --bench to score, or --scores to recompute")
    except ValidationError as error:  # a flag the config refuses, e.g. --system-mode bogus
        fail("; ".join(f"--{str(e['loc'][0]).replace('_', '-')}: {e['msg']}" if e["loc"] else e["msg"] for e in error.errors()))
    except (BenchmarkError, ModelError, PairError, ScoresError, ScoringError, KeyError) as error:
        fail(str(error))
    overall = summary["overall"]
    stdout.print(f"accuracy {overall['accuracy']:.4f} ({overall['correct_predictions']}/{overall['total_examples']}, "
                 f"ties {overall['ties']})", highlight=False)
    table = Table("aspect", "accuracy", "count")
    for name, group in summary["by_aspect"].items():
        table.add_row(name, f"{group['accuracy']:.4f}", str(group["count"]))
    stdout.print(table)
    stdout.print(f"results: {out / RESULTS_FILE}", highlight=False)


@app.command("report")
def report_command(
    result_dirs: Annotated[list[str], typer.Argument(metavar="RESULT_DIR...", help="Folders holding a results.json (ours or published).")],
    out: Annotated[Path, typer.Option(help="Folder for leaderboard.md and leaderboard.html.")],
) -> None:
    """A leaderboard of results: overall, by aspect, by language and by subset, models as rows, each accuracy with its
    Wilson 95 % interval (Markdown and a static HTML page)."""
    from pipelines.eval.leaderboard import LeaderboardError, write_leaderboard

    try:
        markdown, page = write_leaderboard(result_dirs, out)
    except LeaderboardError as error:
        fail(str(error))
    stdout.print(f"leaderboard of {len(result_dirs)} results: {markdown}, {page}", highlight=False)


def _judge_entry(judge: str, config_file: Path | None, backend: str | None, base_url: str | None) -> tuple[dict, dict]:
    """(the judge entry, the label stage's sampling settings) for --judge."""
    if config_file is None:
        entry = {"backend": backend or ("openai" if base_url else "vllm"), "model": judge, **({"base_url": base_url} if base_url else {})}
        return entry, {}
    if backend or base_url:
        fail("--backend and --base-url describe a judge without --config; with --config the judge entry says them")
    from pipelines.run.config import ConfigError, load_config

    try:
        label = dict(load_config(config_file).stages.get("label") or {})
    except ConfigError as error:
        fail(str(error))
    entries = label.get("judges") or []
    names = [entry.get("name") or entry.get("model") for entry in entries]
    if judge not in names:
        fail(f"{config_file}: stages.label.judges has no judge named {judge!r} (judges: {', '.join(map(str, names)) or 'none'})")
    return entries[names.index(judge)], {key: label[key] for key in LABEL_SAMPLING if key in label}


def _evaluate_judge(judge: str, bench: str, out: Path, *, mode: str, config_file: Path | None, backend: str | None,
                    base_url: str | None, votes: int | None, cache: str | None, split: str | None) -> None:
    """`codepref eval --judge`: score one judge entry pairwise or pointwise; answers through the cache."""
    from pydantic import ValidationError

    from pipelines.eval import (
        RESULTS_FILE,
        BenchmarkError,
        JudgeEvalConfig,
        evaluate_judge,
    )

    entry, sampling = _judge_entry(judge, config_file, backend, base_url)
    settings = {**sampling, "judge": entry, "benchmark": bench, "split": split, "mode": mode, "cache": cache,
                **({"votes": votes} if votes is not None else {})}
    if mode == "pointwise" and votes is None:
        settings.pop("votes", None)  # the label stage's votes are per pair and order; pointwise rates each response
    try:
        config = JudgeEvalConfig.model_validate(settings)
        summary = evaluate_judge(config, out)
    except ValidationError as error:
        fail("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" if e["loc"] else e["msg"] for e in error.errors()))
    except (BenchmarkError, KeyError, ValueError) as error:
        fail(str(error))
    overall = summary["overall"]
    line = (f"judge {config.judge.judge} ({mode}): accuracy {overall['accuracy']:.4f} ({overall['correct_predictions']}/"
            f"{overall['total_examples']}, ties {overall['ties']}")
    if "total_parse_failures" in overall:
        line += f", parse failures {overall['total_parse_failures']}"
    stdout.print(line + ")", highlight=False)
    consistency = summary.get("position_consistency")
    if consistency and consistency.get("value") is not None:
        low, high = consistency["ci95"]
        stdout.print(f"position consistency {consistency['value']:.4f} [{low:.2f}, {high:.2f}] "
                     f"({summary.get('inconsistent_pairs', 0)} pairs flip with the order)", highlight=False)
    answers = summary.get("answers") or {}
    if answers:
        stdout.print(f"answers: {answers.get('from_cache', 0)} from the cache, {answers.get('generated', 0)} generated", highlight=False)
    stdout.print(f"results: {out / RESULTS_FILE}", highlight=False)
