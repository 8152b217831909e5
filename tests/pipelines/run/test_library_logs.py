"""What the libraries under codepref may print: their own progress bars only with --verbose."""

from __future__ import annotations

import pytest

from pipelines.run.library_logs import VERBOSE_ENV, library_bars_off
from tests.support.model_fixtures import tiny_causal_lm


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
    return tiny_causal_lm(tmp_path_factory.mktemp("lm"))


def load(folder) -> None:
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(folder)


def test_transformers_bars_are_off_in_the_block_and_back_after(tiny_lm, capfd, monkeypatch):
    from transformers.utils import logging as transformers_logging

    monkeypatch.delenv(VERBOSE_ENV, raising=False)
    with library_bars_off():
        load(tiny_lm)
    assert "Loading weights" not in capfd.readouterr().err
    assert transformers_logging.is_progress_bar_enabled()
    load(tiny_lm)
    assert "Loading weights" in capfd.readouterr().err


def test_verbose_keeps_the_libraries_bars(tiny_lm, capfd, monkeypatch):
    monkeypatch.setenv(VERBOSE_ENV, "1")
    with library_bars_off(datasets=True):
        load(tiny_lm)
    assert "Loading weights" in capfd.readouterr().err


def test_datasets_bars_are_off_in_the_block_and_back_after(tmp_path, capfd, monkeypatch):
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    monkeypatch.delenv(VERBOSE_ENV, raising=False)
    pq.write_table(pa.table({"x": [1, 2, 3]}), tmp_path / "rows.parquet")
    files = str(tmp_path / "rows.parquet")
    with library_bars_off(datasets=True):
        datasets.load_dataset("parquet", data_files=files, split="train", cache_dir=str(tmp_path / "quiet"))
    assert "Generating train split" not in capfd.readouterr().err
    assert not datasets.are_progress_bars_disabled()
    datasets.load_dataset("parquet", data_files=files, split="train", cache_dir=str(tmp_path / "loud"))
    assert "Generating train split" in capfd.readouterr().err
