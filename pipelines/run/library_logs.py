"""Log lines of libraries that a codepref user cannot act on, kept off the terminal; every other line passes."""

from __future__ import annotations

import logging

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
