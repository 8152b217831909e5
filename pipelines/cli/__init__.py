"""The `codepref` command line: one module per command group, assembled here.

- `run`: a run config's stages (run.py);
- one command per stage, named as the stage: mine, synthesize, external, parse, dedup, label, assemble,
  train (stages.py), and eval (eval.py);
- groups: languages, config, audit, criteria, models.
"""

from __future__ import annotations

import sys

import typer

from pipelines.cli import audit, config, eval, languages, models, run, stages
from pipelines.cli.console import fail as _fail
from pipelines.cli.console import stderr, stdout

app = typer.Typer(help="Build code preference corpora and train code reward models on them.", no_args_is_help=True)


app.command("run")(run.run_command)
app.command("mine")(stages.mine_command)
app.command("synthesize")(stages.synthesize_command)
app.command("external")(stages.external_command)
app.command("parse")(stages.parse_command)
app.command("dedup")(stages.dedup_command)
app.command("label")(stages.label_command)
app.command("judge", hidden=True)(stages.label_command)  # the label stage's command before it was named for the stage
app.command("assemble")(stages.assemble_command)
app.command("train")(stages.train_command)

app.add_typer(languages.app, name="languages")
app.add_typer(config.app, name="config")
app.add_typer(audit.app, name="audit")
app.add_typer(eval.app, name="eval")
app.add_typer(models.criteria_app, name="criteria")
app.add_typer(models.models_app, name="models")

__all__ = ["_fail", "app", "main", "stderr", "stdout"]


def main() -> None:  # pragma: no cover - console entry
    sys.exit(app())


if __name__ == "__main__":
    main()
