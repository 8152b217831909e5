"""The `parse` stage: both sides of every candidate parsed with tree-sitter, filtered on what the parse says."""

from pipelines.parse.stage import Parse, ParseConfig

__all__ = ["Parse", "ParseConfig"]
