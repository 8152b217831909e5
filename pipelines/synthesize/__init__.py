"""The `synthesize` stage: commit pairs and bug-injected instruction pairs."""

from pipelines.synthesize.stage import Synthesize, SynthesizeConfig

__all__ = ["Synthesize", "SynthesizeConfig"]
