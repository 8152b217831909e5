"""Security sets: secure and vulnerable versions of the same code (ProSec, CyberNative)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from pipelines.core import Rejection
from pipelines.external.adapters.base import (
    PROMPT_ORIGIN,
    SECURITY_HARDNESS,
    Adapter,
    content_id,
    register_adapter,
)
from schemas import Candidate


class CodeOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    extract_code: bool = Field(True, description="Take the longest fenced code block of a Markdown answer.")


@register_adapter
class ProSec(Adapter):
    """Vulnerability fixes for CWE-inducing instructions (prosecalign/prosec-mixed-clm7b-inst).

    Layout checked: github.com/PurCL/ProSec src/mix_and_upload_original_w_fixed_batch.py (writes
    lang, cwe, original_instruction, original_code, fixed_code, benign, empty) and src/ts_utils.py
    (languages java, javascript, csharp, python, cpp, c); the card of
    https://huggingface.co/datasets/prosecalign/prosec-mixed-clm7b-inst holds only its YAML (509
    bytes), which was not readable: the column names are the generator's, UNCONFIRMED on the card.
    `benign == False` rows are security pairs (original_code flagged vulnerable, fixed_code passes
    re-detection); `benign == True` rows are utility-preservation pairs with no security preference
    and are dropped (`benign_pair`). Security Hardness, chosen = fixed_code, prompt =
    original_instruction.
    """

    name = "prosec"
    reasons: ClassVar[dict[str, str]] = {"benign_pair": "a utility-preservation pair, not a security fix"}
    roles = {"language": ("lang",), "cwe": ("cwe",), "instruction": ("original_instruction",),
             "insecure": ("original_code",), "secure": ("fixed_code",), "benign": ("benign",)}
    optional = frozenset({"cwe", "benign", "language"})
    Options = CodeOptions

    def prepare(self, file: str, row: dict[str, Any]) -> tuple[str, dict[str, Any]] | Rejection:
        instruction, insecure, secure = self.text(row, "instruction"), self.text(row, "insecure"), self.text(row, "secure")
        benign = self.get(row, "benign")
        if benign is True or str(benign).lower() == "true":
            return self.reject("benign_pair", "a utility-preservation pair, not a security fix")
        language = self.language(self.get(row, "language"))
        if isinstance(language, Rejection):
            return language
        return content_id(instruction, insecure, secure), {"instruction": instruction, "insecure": insecure, "secure": secure,
                                                            "language": language, "cwe": self.text(row, "cwe")}

    def pairs(self, key: str, items: list[dict[str, Any]], statements: dict[str, str]) -> Iterator[Candidate | Rejection]:
        (item,) = items
        sides = self.code_sides(item["secure"], item["insecure"], item["instruction"])
        if isinstance(sides, Rejection):
            yield sides
            return
        chosen, rejected = sides
        cwe = f" ({item['cwe']})" if item["cwe"] else ""
        yield self.candidate(key, key, SECURITY_HARDNESS, item["language"], (item["instruction"], PROMPT_ORIGIN), chosen, rejected,
                             verification=f"unverified here; ProSec: rejected flagged by a static detector{cwe}, chosen passes it")


@register_adapter
class CyberNative(Adapter):
    """Synthetic secure / vulnerable answers to one question (CyberNative/Code_Vulnerability_Security_DPO).

    Layout checked: https://huggingface.co/datasets/CyberNative/Code_Vulnerability_Security_DPO/tree/main (one file,
    secure_programming_dpo.json, 4.66k rows, apache-2.0) and public loaders of it, which read lang,
    vulnerability, system, question, chosen, rejected. Whether the file is a JSON array or JSON lines,
    and the exact `lang` spellings (e.g. "c++", "c#", "python"), are UNCONFIRMED: both file forms are
    read, and languages resolve through the registry's aliases (PHP, Swift, Kotlin, Fortran are
    dropped as unknown). Answers are Markdown: the longest fenced block is taken. Security Hardness,
    chosen = the secure answer, prompt = question.
    """

    name = "cybernative"
    roles = {"language": ("lang",), "question": ("question",), "chosen": ("chosen",), "rejected": ("rejected",),
             "vulnerability": ("vulnerability",)}
    optional = frozenset({"vulnerability", "language"})
    Options = CodeOptions

    def prepare(self, file: str, row: dict[str, Any]) -> tuple[str, dict[str, Any]] | Rejection:
        question, chosen, rejected = self.text(row, "question"), self.text(row, "chosen"), self.text(row, "rejected")
        language = self.language(self.get(row, "language"))
        if isinstance(language, Rejection):
            return language
        return content_id(question, chosen, rejected), {"question": question, "chosen": chosen, "rejected": rejected,
                                                        "language": language, "vulnerability": self.text(row, "vulnerability")}

    def pairs(self, key: str, items: list[dict[str, Any]], statements: dict[str, str]) -> Iterator[Candidate | Rejection]:
        (item,) = items
        sides = self.code_sides(item["chosen"], item["rejected"], item["question"])
        if isinstance(sides, Rejection):
            yield sides
            return
        chosen, rejected = sides
        about = f": {item['vulnerability'][:200]}" if item["vulnerability"] else ""
        yield self.candidate(key, key, SECURITY_HARDNESS, item["language"], (item["question"], PROMPT_ORIGIN), chosen, rejected,
                             verification=f"unverified here; CyberNative: synthetic vulnerable answer{about}")

