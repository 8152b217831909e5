"""Corpus rows -> token sequences for Bradley-Terry training: chat template, response-only truncation, counted drops.

Each row becomes two conversations that share a prompt (a system turn when `system` is not empty,
then `input` as the user turn) and differ in the assistant turn (`chosen` or `rejected`), each
rendered by the tokenizer's chat template. A conversation longer than `max_length` loses the end
of its response body, never the prompt and never the end-of-turn tokens the template closes the
response with. A pair is dropped, with a counted reason, when its prompt leaves no room for a
response token (`prompt_too_long`) or when its two token sequences are the same
(`identical_after_truncation` when truncation made them so, else `identical_responses`).
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from pipelines.run.library_logs import library_bars_off
from pipelines.train.config import (
    IDENTICAL_AFTER_TRUNCATION,
    IDENTICAL_RESPONSES,
    PROMPT_TOO_LONG,
)

log = logging.getLogger(__name__)

CONVERSATION_COLUMNS = ("system", "input", "chosen", "rejected")


def conversation(system: str, prompt: str, response: str | None = None) -> list[dict[str, str]]:
    """Chat messages of one side: a system turn only when `system` has text, the user turn, the response."""
    messages = [{"role": "system", "content": system}] if system and system.strip() else []
    messages.append({"role": "user", "content": prompt})
    if response is not None:
        messages.append({"role": "assistant", "content": response})
    return messages


@dataclass(frozen=True)
class EncodedPair:
    """Token ids of both sides; the first `prompt_length` ids are the shared prompt."""

    chosen_ids: list[int]
    rejected_ids: list[int]
    prompt_length: int
    truncated: bool


@dataclass(frozen=True)
class DroppedPair:
    reason: str
    detail: str


class PairEncoder:
    """Renders and tokenizes a pair with the tokenizer's chat template and fits it into `max_length`."""

    def __init__(self, tokenizer: Any, max_length: int):
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError(f"tokenizer of {tokenizer.name_or_path!r} has no chat template; the trainer renders conversations with it")
        if tokenizer.pad_token_id is None:
            raise ValueError(f"tokenizer of {tokenizer.name_or_path!r} has no pad token; set one (see train.load_tokenizer)")
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.pad_id = tokenizer.pad_token_id
        special = {i for i, token in tokenizer.added_tokens_decoder.items() if token.special}
        self.special_ids = frozenset(special | set(tokenizer.all_special_ids))

    def _ids(self, messages: list[dict[str, str]], generation_prompt: bool) -> list[int]:
        return list(self.tokenizer.apply_chat_template(
            messages, tokenize=True, add_generation_prompt=generation_prompt, return_dict=False))

    def _end_of_turn(self, response: list[int]) -> int:
        """Where the template's closing tokens start: the last special token of the response and what follows it."""
        for index in range(len(response) - 1, -1, -1):
            if response[index] in self.special_ids:
                return index
        return len(response)

    def _fit(self, prompt_length: int, response: list[int]) -> tuple[list[int], bool] | None:
        """The response within the budget left by the prompt (end-of-turn kept), whether it was cut; None if no room."""
        if prompt_length + len(response) <= self.max_length:
            return response, False
        cut = self._end_of_turn(response)
        body, closing = response[:cut], response[cut:]
        room = self.max_length - prompt_length - len(closing)
        if room < 1:
            return None
        return body[:room] + closing, True

    def encode(self, system: str, prompt: str, chosen: str, rejected: str) -> EncodedPair | DroppedPair:
        prompt_ids = self._ids(conversation(system, prompt), generation_prompt=True)
        chosen_full = self._ids(conversation(system, prompt, chosen), generation_prompt=False)
        rejected_full = self._ids(conversation(system, prompt, rejected), generation_prompt=False)
        # The prompt is what both sides share with the rendered prompt; a template whose tokens merge
        # across the boundary just counts that token as response.
        shared = min(_common_prefix(prompt_ids, chosen_full), _common_prefix(prompt_ids, rejected_full))
        prompt = chosen_full[:shared]
        fitted = [self._fit(shared, full[shared:]) for full in (chosen_full, rejected_full)]
        if fitted[0] is None or fitted[1] is None:
            longest = max(len(chosen_full), len(rejected_full))
            return DroppedPair(PROMPT_TOO_LONG, f"prompt {shared} tokens + end of turn leave no response token "
                                                f"within max_length {self.max_length} (longest side {longest})")
        (chosen_response, chosen_cut), (rejected_response, rejected_cut) = fitted
        if chosen_response == rejected_response:
            truncated = chosen_cut or rejected_cut
            reason = IDENTICAL_AFTER_TRUNCATION if truncated else IDENTICAL_RESPONSES
            return DroppedPair(reason, f"chosen and rejected are the same {len(chosen_response)} response tokens"
                                       + (f" after truncation to max_length {self.max_length}" if truncated else ""))
        chosen_ids, rejected_ids = prompt + chosen_response, prompt + rejected_response
        for ids in (chosen_ids, rejected_ids):
            if ids[-1] == self.pad_id:
                raise ValueError(
                    f"the chat template of {self.tokenizer.name_or_path!r} ends conversations with the pad token "
                    f"{self.tokenizer.pad_token!r}; a sequence-classification model would score the token before it. "
                    "Give the tokenizer a pad token of its own.")
        return EncodedPair(chosen_ids, rejected_ids, shared, chosen_cut or rejected_cut)

    def encode_batch(self, batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        """`datasets.map(batched=True)` form: id columns, prompt length, and the drop reason ('' when kept)."""
        out: dict[str, list[Any]] = {k: [] for k in ("chosen_ids", "rejected_ids", "prompt_length", "truncated", "drop_reason", "drop_detail")}
        for system, prompt, chosen, rejected in zip(*(batch[c] for c in CONVERSATION_COLUMNS), strict=True):
            result = self.encode(system or "", prompt, chosen, rejected)
            kept = isinstance(result, EncodedPair)
            out["chosen_ids"].append(result.chosen_ids if kept else [])
            out["rejected_ids"].append(result.rejected_ids if kept else [])
            out["prompt_length"].append(result.prompt_length if kept else 0)
            out["truncated"].append(result.truncated if kept else False)
            out["drop_reason"].append("" if kept else result.reason)
            out["drop_detail"].append("" if kept else result.detail)
        return out


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def corpus_files(data: list[str]) -> list[str]:
    """Parquet files of the `data` entries: files as given, a folder's part-*.parquet shards, else its *.parquet."""
    from storage import (
        list_parts,  # imported here: the encoder and collation need no Beam
    )

    files: list[str] = []
    for entry in data:
        path = Path(entry)
        if path.is_dir():
            found = list_parts(str(path)) or sorted(str(p) for p in path.glob("*.parquet"))
            if not found:
                raise FileNotFoundError(f"data folder {entry} holds no Parquet files (part-*.parquet or *.parquet)")
            files.extend(found)
        elif path.is_file():
            files.append(str(path))
        else:
            raise FileNotFoundError(f"data entry {entry} is neither a Parquet file nor a folder")
    return files


@dataclass
class PreparedPairs:
    """The kept pairs (columns chosen_ids, rejected_ids, prompt_length) and the funnel that led to them."""

    pairs: Any  # datasets.Dataset
    files: list[str]
    pairs_read: int
    dropped: dict[str, int]
    truncated: int

    @property
    def pairs_kept(self) -> int:
        return len(self.pairs)


def prepare_pairs(data: list[str], encoder: PairEncoder, cache_dir: str | None, num_proc: int,
                  dropped_file: Path | None) -> PreparedPairs:
    """Read the corpus, encode every pair, count and (when `dropped_file` is given) list the drops."""
    import datasets
    import pyarrow.parquet as pq

    files = corpus_files(data)
    present = pq.read_schema(files[0]).names if files else []
    missing = [c for c in CONVERSATION_COLUMNS if c not in present]
    if missing:
        raise ValueError(f"corpus files {files[:3]}{' ...' if len(files) > 3 else ''} lack columns {missing}; "
                         f"a corpus row needs {', '.join(CONVERSATION_COLUMNS)}")
    keep = [c for c in (*CONVERSATION_COLUMNS, "idx") if c in present]
    # Only the columns training reads: the ClassLabel columns are left unread, so corpora whose `language` vocabularies
    # differ (each run's grows with its registry; `datasets` would cast every file to the first file's names) train together.
    with library_bars_off(datasets=True):
        corpus = datasets.load_dataset("parquet", data_files=files, split="train", cache_dir=cache_dir, columns=keep)
    encoded = corpus.map(encoder.encode_batch, batched=True, num_proc=num_proc if num_proc > 1 else None,
                         desc="Tokenizing pairs")
    reasons = encoded["drop_reason"]
    dropped = dict(sorted(Counter(r for r in reasons if r).items()))
    if dropped_file is not None:
        with dropped_file.open("w", encoding="utf-8") as handle:
            for index in (i for i, r in enumerate(reasons) if r):
                row = encoded[index]
                handle.write(json.dumps({"row": index, "idx": row.get("idx"), "reason": row["drop_reason"],
                                         "detail": row["drop_detail"]}) + "\n")
    with library_bars_off(datasets=True):
        kept = encoded.filter(lambda reason: reason == "", input_columns="drop_reason")
    truncated = sum(kept["truncated"])
    kept = kept.select_columns(["chosen_ids", "rejected_ids", "prompt_length"])
    if dropped:
        log.warning("dropped %d of %d pairs: %s", sum(dropped.values()), len(encoded), dropped)
    log.info("%d pairs kept (%d truncated) from %d files", len(kept), truncated, len(files))
    return PreparedPairs(pairs=kept, files=files, pairs_read=len(encoded), dropped=dropped, truncated=truncated)


@dataclass(frozen=True)
class PairBatch:
    """Chosen rows then rejected rows, right-padded; `lm_mask` marks the chosen response tokens."""

    input_ids: torch.Tensor  # (2B, T)
    attention_mask: torch.Tensor  # (2B, T)
    lm_mask: torch.Tensor  # (2B, T) bool; all False on the rejected rows
    pairs: int

    def to(self, device: torch.device) -> PairBatch:
        return PairBatch(self.input_ids.to(device), self.attention_mask.to(device), self.lm_mask.to(device), self.pairs)


def collate(rows: dict[str, list[Any]], pad_id: int) -> PairBatch:
    """A micro-batch of encoded pairs (a `Dataset[indices]` slice) as padded tensors."""
    sequences = [*rows["chosen_ids"], *rows["rejected_ids"]]
    pairs = len(rows["chosen_ids"])
    width = max(len(s) for s in sequences)
    input_ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
    lm_mask = torch.zeros((len(sequences), width), dtype=torch.bool)
    for row, ids in enumerate(sequences):
        input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        attention_mask[row, : len(ids)] = 1
    for row, (ids, prompt_length) in enumerate(zip(rows["chosen_ids"], rows["prompt_length"], strict=True)):
        lm_mask[row, prompt_length: len(ids)] = True
    return PairBatch(input_ids, attention_mask, lm_mask, pairs)
