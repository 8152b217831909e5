"""`codepref eval`: a reward model's (or an LLM judge's) preference accuracy on a CRB-format benchmark, and
`codepref eval report`: a leaderboard of any set of results, ours and published ones alike."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from pipelines.cli.console import fail, stdout

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
) -> None:
    """Preference accuracy of a reward model on a CRB-format benchmark, by aspect, language and subset."""
    if ctx.invoked_subcommand is not None:
        return
    if out is None:
        fail("give --out (the folder for scores.parquet and results.json)")
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
