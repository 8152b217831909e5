"""The `label` stage: LLM judges vote on each pair's criterion in both presentation orders."""

from pipelines.label.stage import Label, LabelConfig

__all__ = ["Label", "LabelConfig"]
