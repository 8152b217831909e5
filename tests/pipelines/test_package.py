"""Importing codepref's pipelines: Apache Beam comes without pandas, which stays importable."""

from __future__ import annotations

import subprocess
import sys


def test_beam_is_imported_without_pandas_and_pandas_still_imports_later():
    probe = ("import sys, pipelines.cli, pipelines.mine.stage, apache_beam; "
             "print('pandas' in sys.modules); import pandas; print(pandas.DataFrame({'a': [1]}).shape)")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "(1,", "1)"]
