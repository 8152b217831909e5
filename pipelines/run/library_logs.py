"""Log lines of libraries that a codepref user cannot act on, kept off the terminal; every other line passes."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

VERBOSE_ENV = "CODEPREF_VERBOSE"  # "1" (`--verbose`): libraries and the judge engine log and draw at their own levels

UNACTIONABLE = (
    # apache_beam's BigQuery client module, logged on root at import by every process that imports Beam:
    # codepref reads and writes no BigQuery.
    "apitools not found, and bigquery client libraries are not available",
)


class DropUnactionable(logging.Filter):
    """Drops the records whose message starts with one of `UNACTIONABLE`."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(UNACTIONABLE)


def drop_unactionable_lines() -> None:
    """Filter the root logger, where those lines are logged (idempotent)."""
    root = logging.getLogger()
    if not any(isinstance(f, DropUnactionable) for f in root.filters):
        root.addFilter(DropUnactionable())


@contextmanager
def library_bars_off(datasets: bool = False) -> Iterator[None]:
    """transformers' own progress bars (loading and writing weights) and, with `datasets`, those of datasets (building
    a split, filtering) off for the block, unless $CODEPREF_VERBOSE is 1; codepref's own bars (tokenizing pairs,
    training) are not theirs and stay."""
    if os.environ.get(VERBOSE_ENV) == "1":
        yield
        return
    from transformers.utils import logging as transformers_logging

    restore = []
    if transformers_logging.is_progress_bar_enabled():
        transformers_logging.disable_progress_bar()
        restore.append(transformers_logging.enable_progress_bar)
    if datasets:
        import datasets as hf_datasets

        if not hf_datasets.are_progress_bars_disabled():
            hf_datasets.disable_progress_bars()
            restore.append(hf_datasets.enable_progress_bars)
    try:
        yield
    finally:
        for enable in restore:
            enable()
