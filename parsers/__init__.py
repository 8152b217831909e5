"""Everything tree-sitter: the language registry and code facts."""

from parsers.facts import CodeFacts, Span, code_tokens, comment_free_tokens, detect_language, parse, strip_comments
from parsers.registry import (
    GrammarError,
    GrammarRef,
    LanguageRegistry,
    LanguageSpec,
    RegistryError,
    languages,
    user_registry_path,
)

__all__ = [
    "CodeFacts",
    "GrammarError",
    "GrammarRef",
    "LanguageRegistry",
    "LanguageSpec",
    "RegistryError",
    "Span",
    "code_tokens",
    "comment_free_tokens",
    "detect_language",
    "languages",
    "parse",
    "strip_comments",
    "user_registry_path",
]
