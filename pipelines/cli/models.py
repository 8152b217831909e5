"""`codepref criteria` and `codepref models`: the criteria classifier and the local models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from pipelines.cli.console import fail, stdout

criteria_app = typer.Typer(help="The criteria classifier (second pass after the seed terms).", no_args_is_help=True)
models_app = typer.Typer(help="Local models (no network).", no_args_is_help=True)


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
        fail(f"{input_dir}: no Commit records")
    texts, labels = seed_labelled(rows, SeedTerms(), mask_terms=mask_terms)
    train, test = held_out_split([f"{r['repo']}/{r['commit']}" for r in rows], held_out, seed)
    try:
        classifier = TfidfLogReg.train([texts[i] for i in train], [labels[i] for i in train], seed=seed)
    except ValueError as error:
        fail(f"{input_dir}: {error}")
    classifier.save(out)
    figures = evaluate(classifier, [texts[i] for i in test], [labels[i] for i in test], threshold)
    (out / "held_out.json").write_text(json.dumps({"threshold": threshold, "mask_terms": mask_terms, "share": held_out,
                                                    "commits": len(rows), "figures": figures}, indent=2))
    table = Table("criterion", "support", "predicted", "precision", "recall", "f1", title=f"held out: {len(test)} of {len(rows)} commits")
    for criterion, f in figures.items():
        table.add_row(criterion, str(f["support"]), str(f["predicted"]), f"{f['precision']:.3f}", f"{f['recall']:.3f}", f"{f['f1']:.3f}")
    stdout.print(table)
    stdout.print(f"classifier: {out}", highlight=False)


@models_app.command("prepare")
def models_prepare(
    cache: Annotated[Path | None, typer.Option(help="Model cache directory (default: $XDG_CACHE_HOME/codepref/models).")] = None,
) -> None:
    """Convert the packaged SmolLM2-135M-Instruct (the default CPU judge) into a model folder, once."""
    from llm.models import ModelUnavailable, prepare_smollm2

    try:
        path = prepare_smollm2(cache)
    except ModelUnavailable as error:
        fail(str(error))
    stdout.print(f"SmolLM2-135M-Instruct: {path}", highlight=False)
