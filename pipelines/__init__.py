"""Beam stages, run orchestration and the command line.

Importing this package imports Apache Beam without pandas: Beam imports pandas, when it can, only to type DoFns
that take pandas batches, which codepref has none of, and pandas costs 43 MB in every process (the command and
each of the local runner's workers: 192 -> 149 MB for a worker with every stage imported). pandas can still be
imported later (`datasets` does).
"""

from __future__ import annotations

import logging
import sys
from importlib.machinery import ModuleSpec

from pipelines.run.library_logs import drop_unactionable_lines


class _WithoutPandas:
    """A finder that refuses pandas while Beam is imported, so Beam's optional `import pandas` fails."""

    @staticmethod
    def find_spec(name: str, path: object = None, target: object = None) -> ModuleSpec | None:
        if name == "pandas" or name.startswith("pandas."):
            raise ImportError("pandas is not imported with Apache Beam by codepref")
        return None


# Beam logs a line a user cannot act on as it is imported (here or later): it is dropped.
drop_unactionable_lines()

if "apache_beam" not in sys.modules and "pandas" not in sys.modules:
    # That line goes through `logging.warning`, which would also give a root logger without handlers a stderr handler
    # passing every level: a handler that does nothing stands in while Beam is imported, so the root logger is left
    # as it was.
    _stand_in = logging.NullHandler()
    _root = logging.getLogger()
    if not _root.handlers:
        _root.addHandler(_stand_in)
    sys.meta_path.insert(0, _WithoutPandas)  # type: ignore[arg-type]
    try:
        import apache_beam  # noqa: F401
    finally:
        sys.meta_path.remove(_WithoutPandas)  # type: ignore[arg-type]
        _root.removeHandler(_stand_in)
