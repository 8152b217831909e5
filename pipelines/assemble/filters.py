"""The final filters of the corpus, each a counted drop reason: conversation length in tokens,
tree depth of the code responses, English prompts, benchmark decontamination."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, ClassVar

from apache_beam.metrics import Metrics

from parsers import LanguageRegistry
from parsers.facts import parse
from pipelines.assemble.decontaminate import BenchmarkFile, BenchmarkIndex
from pipelines.core import DropReasons, RecordFilter, Rejection, metrics_namespace

STAGE = "assemble"
_FENCED = re.compile(r"```.*?(```|\Z)", re.DOTALL)
_INLINE = re.compile(r"`[^`\n]*`")

# The decisions taken while a pair is prepared (before the final filters).
PREPARE = DropReasons("prepare", {
    "not_kept_by_judges": "the judges' votes did not pass the keep rule (label stage)",
    "language_not_in_corpus_labels": "the pair's language is not one of the corpus's ClassLabel names",
})


def tokenizer_file(name: str) -> Path:
    """'smollm2' (packaged, offline), a tokenizer.json, or a folder holding one."""
    if name == "smollm2":
        from llm.models import smollm2_tokenizer

        return smollm2_tokenizer()
    path = Path(name)
    path = path / "tokenizer.json" if path.is_dir() else path
    if not path.is_file():
        raise FileNotFoundError(f"tokenizer {name!r}: no tokenizer.json there")
    return path


def byte_level_slack(tokenizer_json: str) -> int | None:
    """How many tokens a text can have beyond its UTF-8 length, where the tokenizer bounds it; else None.

    A byte-level BPE without a normalizer turns every token into one or more bytes of the text (plus the
    prefix space it may add), so a text of n bytes has at most n + slack tokens. Other tokenizers (a
    normalizer that expands text, SentencePiece's added "▁" token) give no such bound.
    """
    spec = json.loads(tokenizer_json)
    pre = spec.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", []) if pre.get("type") == "Sequence" else [pre]
    byte_level = [step for step in steps if step.get("type") == "ByteLevel"]
    if spec.get("normalizer") is not None or spec.get("model", {}).get("type") != "BPE" or not byte_level:
        return None
    return sum(1 for step in byte_level if step.get("add_prefix_space", True))


class TokenLength(RecordFilter):
    """Each conversation (system + input + one response) within `max_tokens` of a local tokenizer.

    With a byte-level tokenizer, a pair whose byte lengths already fit is passed without encoding it
    (most pairs: their code is far shorter than the limit); the others are encoded.
    """

    name = "token_length"
    reasons: ClassVar[dict[str, str]] = {
        "too_many_tokens": "a conversation (system + input + one response) has more than `max_tokens` tokens of `tokenizer`",
    }

    def __init__(self, tokenizer: str, max_tokens: int):
        super().__init__(STAGE, "pair_id")
        self.tokenizer_name, self.max_tokens = tokenizer, max_tokens

    def setup(self) -> None:
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(tokenizer_file(self.tokenizer_name)))
        self.slack = byte_level_slack(self.tokenizer.to_str())

    def check(self, record: dict[str, Any]) -> Rejection | None:
        shared_text = f"{record['system']}\n{record['prompt']}"
        if self.slack is not None:
            longest = max(len(record["chosen"].encode("utf-8")), len(record["rejected"].encode("utf-8")))
            if len(shared_text.encode("utf-8")) + longest + 2 * self.slack <= self.max_tokens:
                return None
        shared = len(self.tokenizer.encode(shared_text, add_special_tokens=False).ids)
        for side in ("chosen", "rejected"):
            total = shared + len(self.tokenizer.encode(record[side], add_special_tokens=False).ids)
            if total > self.max_tokens:
                return self.reject("too_many_tokens", "{side} conversation has {tokens} tokens > {max_tokens}", side=side,
                                   tokens=total, max_tokens=self.max_tokens)
        return None


class CodeDepth(RecordFilter):
    """Both code responses parse to a tree at least `min_depth` deep (named nodes on one path)."""

    name = "code_depth"
    reasons: ClassVar[dict[str, str]] = {
        "unknown_language": "the pair has no facts and its language is not in the language registry",
        "too_shallow": "a response's tree of named nodes is less than `min_depth` deep",
    }

    def __init__(self, registry: LanguageRegistry, min_depth: int):
        super().__init__(STAGE, "pair_id")
        self.registry, self.min_depth = registry, min_depth

    def check(self, record: dict[str, Any]) -> Rejection | None:
        for side in ("chosen", "rejected"):
            facts = record.get(f"{side}_facts")
            if facts is not None:
                depth = facts["depth"]
            elif record["language"] in self.registry:
                depth = parse(record[side], self.registry[record["language"]]).depth
            else:
                return self.reject("unknown_language", "{language}", language=record["language"])
            if depth < self.min_depth:
                return self.reject("too_shallow", "{side} tree depth {depth} < {min_depth}", side=side, depth=depth,
                                   min_depth=self.min_depth)
        return None


def prose(text: str) -> str:
    """`text` without fenced code blocks and inline code: what a language detector should read."""
    return _INLINE.sub(" ", _FENCED.sub(" ", text))


class EnglishPrompt(RecordFilter):
    """The prompt's prose is English (py3langid, whose model ships in its wheel). A prompt is
    dropped only when another language is detected with at least `min_confidence`; too little
    prose, or an unsure detection, keeps it (counted: `prompt_language_unknown`, `_uncertain`)."""

    name = "english_prompt"
    reasons: ClassVar[dict[str, str]] = {
        "prompt_not_english": "the prompt's prose (code left out) is another language, detected with at least 0.9 confidence",
    }

    def __init__(self, min_chars: int = 20, min_confidence: float = 0.9):
        super().__init__(STAGE, "pair_id")
        self.min_chars, self.min_confidence = min_chars, min_confidence

    def setup(self) -> None:
        from py3langid.langid import MODEL_FILE, LanguageIdentifier

        self.identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)

    def check(self, record: dict[str, Any]) -> Rejection | None:
        text = prose(record["prompt"]).strip()
        if len(text) < self.min_chars:
            Metrics.counter(metrics_namespace(STAGE), "prompt_language_unknown").inc()
            return None
        language, confidence = self.identifier.classify(text.lower())  # case carries no language; SHOUTED English reads as another
        if language == "en":
            return None
        if confidence < self.min_confidence:
            Metrics.counter(metrics_namespace(STAGE), "prompt_language_uncertain").inc()
            return None
        return self.reject("prompt_not_english", "detected {language!r} ({confidence:.2f}): {prose!r}", language=language,
                           confidence=confidence, prose=text[:120])


class Decontaminate(RecordFilter):
    """No prompt shares a word n-gram with a benchmark prompt. Its rejections (benchmark, n-gram) also go to
    the `REJECTED` output, from which the decontamination report is made."""

    name = "decontaminate"
    reasons: ClassVar[dict[str, str]] = {
        "benchmark_contamination": "the prompt shares a `contamination_ngram`-word n-gram with a prompt of a `benchmarks` file",
    }
    emits_rejections = True

    def __init__(self, benchmarks: list[BenchmarkFile], ngram: int):
        super().__init__(STAGE, "pair_id")
        self.benchmarks, self.ngram = benchmarks, ngram

    def setup(self) -> None:
        self.index = BenchmarkIndex(self.benchmarks, self.ngram)

    def check(self, record: dict[str, Any]) -> Rejection | None:
        hit = self.index.find(record["prompt"])
        if hit is None:
            return None
        return self.reject("benchmark_contamination", "{benchmark}: shares the {n}-gram {ngram!r}", benchmark=hit.benchmark,
                           n=self.ngram, ngram=hit.ngram)
