"""CodeR-Pile: the BGE-Coder retrieval set's positive and hard negative code."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import PurePosixPath
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from pipelines.core import Rejection
from pipelines.external.adapters.base import (
    FUNCTIONAL_CORRECTNESS,
    PROMPT_ORIGIN,
    Adapter,
    content_id,
    register_adapter,
    stable_rank,
)
from schemas import Candidate


class CodeRPileOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    tasks: tuple[str, ...] = Field(
        ("code_augmentation_retrieval", "code_example_retrieval", "code_integration_retrieval", "code_refinement_retrieval",
         "code_simplification_retrieval", "pseudocode_retrieval", "tutorial_query_retrieval", "web_code_retrieval"),
        description="Task folders read (the reference's eight subsets, mapped to the generator's task names).")
    nl_languages: tuple[str, ...] = Field(("en",), description="Natural-language folders read.")
    top_k: int = Field(10, ge=1, description="The rejected side is drawn from the first top_k hard negatives.")
    zipf_exponent: float = Field(1.0, ge=0.0, description="P(k) ~ 1/(k+1)^s over the top_k negatives (s=0: uniform).")
    extract_code: bool = Field(True, description="Take the longest fenced code block of a document.")


CODER_PILE_GROUPS = ("text2code", "code2text", "code2code", "hybrid")
CODER_PILE_MAIN_TYPES = {  # generator task -> main type (FlagEmbedding research/BGE_Coder/data_generation/constant.py)
    "web_code_retrieval": "text2code", "code_contest_retrieval": "text2code", "text2sql_retrieval": "text2code",
    "error_message_retrieval": "text2code", "code_explanation_retrieval": "text2code", "api_usage_retrieval": "text2code",
    "bug_desc_retrieval": "text2code", "pseudocode_retrieval": "text2code", "tutorial_query_retrieval": "text2code",
    "algorithm_desc_retrieval": "text2code",
}


@register_adapter
class CodeRPile(Adapter):
    """Correctness pairs from CodeR-Pile retrieval triplets: chosen = the positive document's code,
    rejected = one of the top hard negatives, drawn with Zipfian weights (nebula2025/CodeR-Pile).

    Layout checked: the file tree of https://huggingface.co/datasets/nebula2025/CodeR-Pile (JSONL files
    `<main_type>/<en|zh>/<task>/<nl>-<codelang>-triplets.jsonl`, e.g.
    code2code/en/optimized_code_retrieval/en-python-triplets.jsonl; cc-by-nc-sa-4.0) and the
    generator, github.com/FlagOpen/FlagEmbedding research/BGE_Coder/data_generation
    (triplet_generator.py writes {prompt, query, pos: [one], neg: [...]}; constant.py names the code
    languages java, python, javascript, php, ruby, go, csharp, cplusplus, c, ... and maps tasks to
    text2code / code2text / code2code / hybrid). The order of `neg` in the published files
    (retrieval rank) is UNCONFIRMED. Language and task come from the file path (or `language` /
    `task` columns of other copies). Prompt: for text2code and hybrid tasks the query (a request in
    words); for code2code tasks the task instruction with "retrieve" read as "write", followed by
    the query code. code2text files (whose documents are prose) are not read.
    """

    name = "coder-pile"
    reasons: ClassVar[dict[str, str]] = {"no_negatives": "the triplet has no hard negatives"}
    roles = {"instruction": ("prompt",), "query": ("query",), "positives": ("pos",), "negatives": ("neg",),
             "task": ("task_type", "task"), "language": ("code_language", "language")}
    optional = frozenset({"instruction", "task", "language"})
    Options = CodeRPileOptions
    spellings = {"cplusplus": "C++", "csharp": "C#"}

    _NAME = re.compile(r"^(?P<nl>[a-z_]+)-(?P<lang>[a-z_+#]+?)(?:-to-(?P<target>[a-z_+#]+))?-triplets\.jsonl?(?:\.gz)?$")

    def _path_parts(self, path: str) -> dict[str, str] | None:
        parts = PurePosixPath(path.replace("\\", "/")).parts
        match = self._NAME.match(parts[-1]) if parts else None
        if not match or len(parts) < 2:
            return None
        main = parts[-4] if len(parts) >= 4 else ""
        if main not in CODER_PILE_GROUPS:
            main = CODER_PILE_MAIN_TYPES.get(parts[-2], "code2code")
        return {"nl": match["nl"], "language": match["target"] or match["lang"], "task": parts[-2], "main": main}

    def wants_file(self, path: str) -> bool:
        parts = self._path_parts(path)
        if parts is None:
            return True  # not the published layout: rows must say their task and language
        return parts["main"] != "code2text" and parts["nl"] in self.options.nl_languages and parts["task"] in self.options.tasks

    def prepare(self, file: str, row: dict[str, Any]) -> tuple[str, dict[str, Any]] | Rejection:
        query, positives, negatives = self.text(row, "query"), self.get(row, "positives"), self.get(row, "negatives")
        parts = self._path_parts(file) or {}
        task = str(self.get(row, "task") or parts.get("task") or "")
        if not task:
            return self.reject("missing_column", "no task: neither a task column nor the published file layout")
        main = parts.get("main") or CODER_PILE_MAIN_TYPES.get(task, "code2code")
        language = self.language(self.get(row, "language") or parts.get("language") or self.settings.language)
        if isinstance(language, Rejection):
            return language
        if not isinstance(positives, list) or not positives or not isinstance(negatives, list):
            return self.reject("malformed_row", "pos must be a non-empty list and neg a list")
        instruction = str(self.get(row, "instruction") or "")
        row_id = f"{task}/{self.fence(language)}/{content_id(query, positives[0])}"
        return row_id, {"task": task, "main": main, "language": language, "instruction": instruction, "query": query,
                        "positive": str(positives[0]), "negatives": [str(n) for n in negatives[: self.options.top_k]]}

    def pick_negative(self, key: str, count: int) -> int:
        """Rank k in [0, count) with P(k) ~ 1/(k+1)^s, drawn from a hash of the row (reproducible)."""
        weights = [1.0 / (k + 1) ** self.options.zipf_exponent for k in range(count)]
        point = stable_rank(f"{key}\0negative") / 2**64 * sum(weights)
        for k, weight in enumerate(weights):
            point -= weight
            if point < 0:
                return k
        return count - 1

    def pairs(self, key: str, items: list[dict[str, Any]], statements: dict[str, str]) -> Iterator[Candidate | Rejection]:
        (item,) = items
        if not item["negatives"]:
            yield self.reject("no_negatives", "the triplet has no hard negatives")
            return
        rank = self.pick_negative(key, len(item["negatives"]))
        sides = self.code_sides(item["positive"], item["negatives"][rank])
        if isinstance(sides, Rejection):
            yield sides
            return
        chosen, rejected = sides
        if item["main"] == "code2code":
            instruction = re.sub(r"\bretrieve\b", "write", item["instruction"], count=1).strip()
            code = f"```{self.fence(item['language'])}\n{item['query'].strip()}\n```"
            prompt = f"{instruction}\n\n{code}" if instruction else item["query"]
        else:
            prompt = item["query"].strip()
        if not prompt.strip():
            yield self.reject("missing_prompt", "empty query")
            return
        yield self.candidate(key, key, FUNCTIONAL_CORRECTNESS, item["language"], (prompt, PROMPT_ORIGIN), chosen, rejected,
                             verification=f"unverified here; CodeR-Pile positive vs hard negative #{rank + 1} ({item['task']})")
