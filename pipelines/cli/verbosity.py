"""`--verbose` of the commands that run stages: what they let through from the libraries beneath them."""

from __future__ import annotations

import logging
import os
from typing import Annotated

import typer

Verbose = Annotated[
    bool, typer.Option("--verbose", help="Show library warnings and the judge engine's start-up logs (vLLM, torch).")
]


def set_verbosity(verbose: bool) -> None:
    """Quiet by default: libraries log at ERROR (Beam's and the others' warnings are about their own set-up) and the
    judge engine starts quietly (llm.backends); --verbose: their warnings, and the engine at its own levels.
    Errors and codepref's own progress print either way."""
    from pipelines.run.library_logs import VERBOSE_ENV

    logging.getLogger().setLevel(logging.WARNING if verbose else logging.ERROR)
    if verbose:
        os.environ[VERBOSE_ENV] = "1"  # read where the engine starts, maybe in a worker process started after this
