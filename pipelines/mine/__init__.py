"""The `mine` stage: single-file commits from git history and commit tables."""

from pipelines.mine.stage import Mine, MineConfig

__all__ = ["Mine", "MineConfig"]
