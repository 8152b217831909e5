"""`codepref audit`: the label-quality audit and the human review round trip."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from pipelines.cli.console import fail, stdout

app = typer.Typer(help="Label-quality audit: agreement, bias, ground truth, human review round trip.", no_args_is_help=True)


@app.command("run")
def audit_run(
    run_dir: Annotated[str, typer.Argument(help="A run directory with a finished label stage (local, or gs://... and the like).")],
    out: Annotated[str | None, typer.Option(help="Folder for metrics.json, report.html and figures (default RUN_DIR/audit).")] = None,
) -> None:
    """Metrics of the judges' votes (DuckDB over the label shards), metrics.json and a static HTML report."""
    from apache_beam.io.filesystems import FileSystems

    from audit import AuditError, audit

    target = out or FileSystems.join(run_dir, "audit")  # strings: a Path would turn gs://b into gs:/b
    try:
        metrics = audit(run_dir, target)
    except AuditError as error:
        fail(str(error))
    sources = ", ".join(f"{s['pairs']} by {s['label_source']}" for s in metrics["label_sources"]["sources"]) or "none"
    stdout.print(f"labelled pairs: {sources}; judged pairs: {metrics['pairs']}, judge votes: {metrics['votes']}", highlight=False)
    for judge in (metrics["qualification"].get("judges") or []):
        verdict = "qualified" if judge["qualified"] else "NOT qualified: " + "; ".join(judge["shortfalls"])
        stdout.print(f"judge {judge['judge']}: {verdict}", highlight=False)
    stdout.print(f"report: {FileSystems.join(target, 'report.html')}; metrics: {FileSystems.join(target, 'metrics.json')}", highlight=False)


@app.command("sample")
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
        fail(str(error))
    stdout.print(f"{summary['items']} items in {summary['strata']} strata; review page: {out / 'review.html'}", highlight=False)


@app.command("import")
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
        fail(str(error))
    stdout.print(json.dumps({k: v for k, v in report.items() if k != "malformed"}, indent=2, default=str)[:4000], highlight=False)
    for bad in report.get("malformed", []):
        stdout.print(f"{verdicts}: line {bad['line']}: {bad['error']}", highlight=False)
    if report.get("malformed"):
        raise typer.Exit(1)
