"""The `external` stage: candidate pairs from local copies of public preference sets, with caps and shares."""

from pipelines.external.adapters import ADAPTERS, Adapter, AdapterSettings
from pipelines.external.stage import (
    External,
    ExternalConfig,
    ExternalSource,
    mix_quotas,
)

__all__ = ["ADAPTERS", "Adapter", "AdapterSettings", "External", "ExternalConfig", "ExternalSource", "mix_quotas"]
