"""`codepref run`: the configured stages of a run config, in run order, skipping those already done."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from parsers import GrammarError, RegistryError
from pipelines.cli.console import fail, stdout
from pipelines.cli.verbosity import Verbose, set_verbosity


def run_command(
    config_file: Annotated[Path, typer.Argument(metavar="CONFIG", help="Run config (YAML).")],
    stages: Annotated[str | None, typer.Option(help="Comma-separated stages to run (default: all configured).")] = None,
    from_stage: Annotated[str | None, typer.Option("--from", help="First stage to run (in run order).")] = None,
    to_stage: Annotated[str | None, typer.Option("--to", help="Last stage to run (in run order).")] = None,
    run_dir: Annotated[str | None, typer.Option(help="Override the config's run_dir.")] = None,
    force: Annotated[bool, typer.Option(help="Rerun stages even when their manifest matches.")] = False,
    verbose: Verbose = False,
) -> None:
    """Run the configured stages; finished stages whose config is unchanged are skipped."""
    set_verbosity(verbose)
    # Beam is slow to import; only the commands that run stages need it.
    from pipelines.run.config import ConfigError, load_config
    from pipelines.run.orchestrator import StageFailed, run, stage_range
    from pipelines.run.progress import RunProgress

    if stages and (from_stage or to_stage):
        fail("give either --stages or --from/--to, not both")
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
                for note in m.notes:
                    stdout.print(f"  [yellow]note[/] {m.stage}: {note}", highlight=False)

            outcomes = run(config, selected=selected, force=force, on_stage=report, on_start=progress.started)
    except StageFailed as error:
        fail(error.summary, code=1)
    except (ConfigError, RegistryError, GrammarError) as error:
        fail(str(error))
    summary = Table("stage", "state", "in", "out", "dropped", "seconds", title=f"run {config.run_dir}")
    summary.add_column("output", overflow="fold")
    for outcome in outcomes:
        m = outcome.manifest
        summary.add_row(m.stage, "skipped" if outcome.skipped else "done", f"{m.records_in:,}", f"{m.records_out:,}",
                        f"{sum(m.dropped.values()):,}", f"{m.seconds:.1f}", str(Path(config.run_dir) / m.stage))
    stdout.print(summary)
    stdout.print(f"run directory: {config.run_dir} ({len(outcomes)} stages)")
