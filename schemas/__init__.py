"""Record types, their Arrow schemas, and the label vocabularies: the one schema module."""

from schemas.records import (
    CORPUS_COLUMNS,
    RECORD_TYPES,
    Candidate,
    CodeSummary,
    Commit,
    CorpusRow,
    Drop,
    JudgedPair,
    OrderCounts,
    Origin,
    Vote,
    arrow_schema,
    from_row,
    schema_of,
    to_row,
)
from schemas.vocab import ASPECTS, CODE_LANGUAGES, CRITERIA, LANGUAGES, Vocabulary

__all__ = [
    "ASPECTS",
    "CODE_LANGUAGES",
    "CORPUS_COLUMNS",
    "CRITERIA",
    "LANGUAGES",
    "RECORD_TYPES",
    "Candidate",
    "CodeSummary",
    "Commit",
    "CorpusRow",
    "Drop",
    "JudgedPair",
    "OrderCounts",
    "Origin",
    "Vocabulary",
    "Vote",
    "arrow_schema",
    "from_row",
    "schema_of",
    "to_row",
]
