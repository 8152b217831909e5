"""The drop reasons of the synthesize stage, declared per step: instruction rows read, commit criteria,
bug injection by mutation, and the LLM tasks (commit review, LLM-written bugs)."""

from __future__ import annotations

from pipelines.core import DropReasons

INSTRUCT_ROWS = DropReasons("instruct_rows", {
    "malformed_row": "an instruction row that is not UTF-8 JSON, or whose instruction, solution or tests are not text",
    "missing_columns": "an instruction row without its instruction or solution column",
    "beyond_limit": "a row past the source's `limit` (the rows of lowest id are kept)",
})

COMMIT_CRITERIA = DropReasons("commit_criteria", {
    "no_criterion": "no seed term in the commit's subject or message (and the classifier, if any, tags none)",
})

BUG_INJECTION = DropReasons("bug_injection", {
    "unknown_language": "the instruction source's language is not in the language registry",
    "sandbox_unavailable": "the sandbox (bubblewrap) cannot run the tests",
    "original_fails_tests": "the solution itself fails its tests",
    "no_mutation_operators": "the language's registry entry has no `mutation` block",
    "no_mutation_site": "none of the mutation operators applies to the solution",
    "no_valid_mutant": "every candidate mutant parses worse than the solution",
    "mutants_pass_tests": "every mutant tried (`max_mutation_attempts`) passes the tests",
})

LLM_REVIEW = DropReasons("llm_review", {
    "review_rejected": "the LLM backend refused the review request",
    "review_unparsed": "the review answer has no rating that parses",
    "review_below_cutoff": "the review rated the pair below `review_cutoff`",
})

LLM_BUGS = DropReasons("llm_bugs", {
    "unknown_language": "the instruction source's language is not in the language registry",
    "sandbox_unavailable": "the sandbox (bubblewrap) cannot run the tests",
    "llm_bug_rejected": "the LLM backend refused the bug request",
    "llm_bug_unparsed": "the answer has no buggy code that parses out of it",
    "llm_bug_unchanged": "the buggy code is the solution itself",
    "llm_bug_parse_errors": "the buggy code parses with more errors than the solution",
    "llm_bug_original_fails_tests": "the solution itself fails its tests",
    "llm_bug_passes_tests": "the buggy code passes the tests the solution passes",
})

# Every step's reasons, in the order the README table lists them.
DECLARERS = (INSTRUCT_ROWS, COMMIT_CRITERIA, BUG_INJECTION, LLM_REVIEW, LLM_BUGS)
SYNTHESIZE_REASONS = DropReasons.union("synthesize", *DECLARERS)
