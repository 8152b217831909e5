"""Scoring a CRB-format benchmark with a reward model: a local `AutoModelForSequenceClassification`
folder with one label, scoring the chosen and the rejected conversation of every pair.

Nothing is dropped: a pair that cannot be encoded, a batch that fails and a score that is not a
finite number are errors naming the pairs. Sequences are scored longest first (an out-of-memory
error comes in the first batch), padded on the right; identical token sequences are scored once,
so identical sides always tie.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.eval.benchmark import BenchPair, read_benchmark
from pipelines.eval.conversations import BenchPairEncoder, EncodedBenchPair
from pipelines.run.library_logs import library_bars_off

log = logging.getLogger(__name__)

SCORES_FILE = "scores.parquet"
SCORES_SCHEMA = pa.schema([
    ("chosen_score", pa.float64()),
    ("rejected_score", pa.float64()),
    ("correct", pa.bool_()),
    ("score_diff", pa.float64()),
    ("language", pa.string()),
    ("aspect", pa.string()),
    ("subset", pa.string()),
    ("id", pa.string()),
])
RUN_METADATA_KEY = b"codepref.eval"  # JSON: how the scores were made (model, benchmark, system mode ...)
DTYPES = ("float32", "bfloat16", "float16")


class ModelError(ValueError):
    """The model folder cannot be used as a reward model; the message names it and what to do."""


class ScoringError(RuntimeError):
    """A batch could not be scored; the message names its pairs."""


def resolve_device(device: str) -> str:
    """`auto` is the first GPU when there is one, else the CPU; any other name is torch's."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def reward_config(model_dir: str) -> Any:
    """The model folder's config, checked to be a one-score sequence classifier."""
    from transformers import AutoConfig

    if not Path(model_dir).is_dir():
        raise ModelError(f"{model_dir}: no such folder; give a local reward model folder (nothing is downloaded)")
    try:
        config = AutoConfig.from_pretrained(model_dir, local_files_only=True)
    except (OSError, ValueError) as error:
        raise ModelError(f"{model_dir}: no readable model config ({error})") from error
    architectures = list(getattr(config, "architectures", None) or [])
    if not any(name.endswith("ForSequenceClassification") for name in architectures):
        raise ModelError(f"{model_dir}: holds {', '.join(architectures) or 'no named architecture'}, not a sequence "
                         "classifier; a reward model is an AutoModelForSequenceClassification with one label")
    if config.num_labels != 1:
        raise ModelError(f"{model_dir}: the classifier has {config.num_labels} labels; a reward model has one score")
    return config


def load_tokenizer(model_dir: str) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    except (OSError, ValueError) as error:
        raise ModelError(f"{model_dir}: no readable tokenizer ({error})") from error


@dataclass
class LoadedRewardModel:
    """A loaded reward model: token id sequences in, one score each out."""

    model: Any
    device: str
    pad_id: int

    @classmethod
    def load(cls, model_dir: str, tokenizer: Any, device: str = "auto", dtype: str = "float32") -> LoadedRewardModel:
        import torch
        from transformers import AutoModelForSequenceClassification

        if dtype not in DTYPES:
            raise ModelError(f"unknown dtype {dtype!r}; known: {', '.join(DTYPES)}")
        with library_bars_off():
            model, info = AutoModelForSequenceClassification.from_pretrained(
                model_dir, local_files_only=True, dtype=getattr(torch, dtype), output_loading_info=True)
        missing = sorted(info.get("missing_keys") or [])
        if missing:
            raise ModelError(f"{model_dir}: no weights for {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}; "
                             "they would be random: is this a trained reward model?")
        pad_id = model.config.pad_token_id
        if pad_id is None:
            pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
            if pad_id is None:
                raise ModelError(f"{model_dir}: neither the config nor the tokenizer names a pad or end token")
            model.config.pad_token_id = pad_id  # the classifier scores the last token that is not padding
        resolved = resolve_device(device)
        return cls(model.to(resolved).eval(), resolved, pad_id)

    def __call__(self, sequences: Sequence[Sequence[int]]) -> list[float]:
        """One forward pass over `sequences`, padded on the right to the longest."""
        import torch

        width = max(len(s) for s in sequences)
        input_ids = torch.full((len(sequences), width), self.pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
        for row, sequence in enumerate(sequences):
            input_ids[row, : len(sequence)] = torch.tensor(sequence, dtype=torch.long)
            attention_mask[row, : len(sequence)] = 1
        with torch.inference_mode():
            logits = self.model(input_ids=input_ids.to(self.device), attention_mask=attention_mask.to(self.device)).logits
        return logits[:, 0].float().cpu().tolist()


def score_sequences(model: Callable[[list[list[int]]], list[float]], encoded: Sequence[EncodedBenchPair], batch_size: int,
                    progress: Callable[[int, int], None] | None = None) -> tuple[list[float], list[float]]:
    """(chosen scores, rejected scores) of the encoded pairs, in their order."""
    index: dict[tuple[int, ...], int] = {}
    owners: list[list[str]] = []  # the pairs each distinct sequence belongs to
    slots: list[tuple[int, int]] = []
    for pair in encoded:
        sides = []
        for sequence in (pair.chosen, pair.rejected):
            position = index.setdefault(tuple(sequence), len(index))
            if position == len(owners):
                owners.append([])
            owners[position].append(pair.pair_id)
            sides.append(position)
        slots.append((sides[0], sides[1]))
    sequences = [list(key) for key in index]
    order = sorted(range(len(sequences)), key=lambda i: -len(sequences[i]))
    scores = [math.nan] * len(sequences)
    batches = math.ceil(len(order) / batch_size)
    for number, start in enumerate(range(0, len(order), batch_size), 1):
        batch = order[start : start + batch_size]
        pair_ids = ", ".join(dict.fromkeys(pid for i in batch for pid in owners[i]))
        try:
            values = model([sequences[i] for i in batch])
        except Exception as error:
            hint = "; lower batch_size or max_length" if "out of memory" in str(error).lower() else ""
            raise ScoringError(f"batch {number} of {batches} failed ({type(error).__name__}: {error}){hint}; "
                               f"its pairs: {pair_ids}") from error
        if len(values) != len(batch) or not all(math.isfinite(v) for v in values):
            raise ScoringError(f"batch {number} of {batches} gave scores that are not finite numbers ({values}); "
                               f"its pairs: {pair_ids}")
        for i, value in zip(batch, values):
            scores[i] = value
        if progress is not None:
            progress(number, batches)
        if number % max(1, batches // 10) == 0:
            log.info("scored batch %d of %d", number, batches)
    return [scores[c] for c, _ in slots], [scores[r] for _, r in slots]


def scores_table(pairs: Sequence[BenchPair], chosen: Sequence[float], rejected: Sequence[float],
                 run: dict[str, Any] | None = None) -> pa.Table:
    """The scores table (SCORES_SCHEMA) of `pairs`; `run` goes into its schema metadata.

    `correct` is chosen_score > rejected_score: a tie is not correct (results() counts ties apart).
    """
    table = pa.Table.from_pydict({
        "chosen_score": list(chosen),
        "rejected_score": list(rejected),
        "correct": [c > r for c, r in zip(chosen, rejected)],
        "score_diff": [c - r for c, r in zip(chosen, rejected)],
        "language": [p.language for p in pairs],
        "aspect": [p.aspect for p in pairs],
        "subset": [p.subset for p in pairs],
        "id": [p.id for p in pairs],
    }, schema=SCORES_SCHEMA)
    return table.replace_schema_metadata({RUN_METADATA_KEY: json.dumps(run, sort_keys=True)}) if run else table


def score(model_dir: str | Path, bench_path: str | Path, system_mode: str = "none", batch_size: int = 8, max_length: int = 4096,
          device: str = "auto", *, split: str | None = None, dtype: str = "float32",
          progress: Callable[[int, int], None] | None = None, recorded_as: tuple[str, str] | None = None) -> pa.Table:
    """Score every pair of the benchmark at `bench_path` with the reward model in `model_dir`.

    Returns the scores table in benchmark order (SCORES_SCHEMA); its schema metadata records the run
    (with `recorded_as`'s (model, benchmark) names in place of local copies' paths, when given).
    `batch_size` counts conversations per forward pass; `max_length` is in tokens.
    """
    if batch_size < 1 or max_length < 1:
        raise ValueError(f"batch_size and max_length must be positive, got {batch_size} and {max_length}")
    model_dir, bench_path = str(model_dir), str(bench_path)
    pairs = read_benchmark(bench_path, split)
    config = reward_config(model_dir)
    positions = getattr(config, "max_position_embeddings", None)
    if positions and max_length > positions:
        raise ModelError(f"{model_dir}: max_length {max_length} is over the model's {positions} positions; "
                         f"use {positions} or less")
    tokenizer = load_tokenizer(model_dir)
    encoded = BenchPairEncoder(tokenizer, system_mode, max_length).encode_all(pairs)  # fails before the weights load
    model = LoadedRewardModel.load(model_dir, tokenizer, device, dtype)
    log.info("scoring %d pairs from %s with %s on %s", len(pairs), bench_path, model_dir, model.device)
    chosen, rejected = score_sequences(model, encoded, batch_size, progress)
    model_name, bench_name = recorded_as or (model_dir, bench_path)
    run = {"model": model_name, "benchmark": bench_name, "split": split, "system_mode": system_mode,
           "max_length": max_length, "batch_size": batch_size, "dtype": dtype, "device": model.device,
           "pairs": len(pairs), "prompts_cut": sum(1 for e in encoded if e.prompt_tokens_cut)}
    return scores_table(pairs, chosen, rejected, run)


def write_scores(table: pa.Table, path: str | Path) -> None:
    pq.write_table(table, str(path))
