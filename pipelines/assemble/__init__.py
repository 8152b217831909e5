"""The `assemble` stage (registers itself on import)."""

from pipelines.assemble.stage import Assemble

__all__ = ["Assemble"]
