"""`codepref config`: the generated config reference, and validation."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from pipelines.cli.console import fail, stdout

app = typer.Typer(help="Run configs: the documented reference, and validation.", no_args_is_help=True)


@app.command("init")
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
        fail(str(error))
    if out is None:
        sys.stdout.write(text)
    else:
        out.write_text(text, encoding="utf-8")
        stdout.print(f"wrote {out}; fill in the keys marked <required> and delete the stages you do not run", highlight=False)


@app.command("check")
def config_check(
    config_file: Annotated[Path, typer.Argument(metavar="CONFIG", help="Run config (YAML).")],
    show: Annotated[bool, typer.Option(help="Print the config with every default filled in.")] = False,
) -> None:
    """Validate a run config: keys, types, stage names and inputs; errors name the file and the key."""
    logging.getLogger().setLevel(logging.ERROR)
    import yaml

    from pipelines.core import STAGES
    from pipelines.run.config import ConfigError, load_config
    from pipelines.run.orchestrator import check_run

    try:
        config = load_config(config_file)
        order, _, _ = check_run(config)  # the run's own checks, in the run's words
        resolved = {name: config.stage_config(name).model_dump(mode="json") for name in order}
    except ConfigError as error:
        fail(str(error))
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
