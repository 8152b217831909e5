"""Adapters for the public preference sets the reference mixed into its corpus, one module per family of
sets; importing this package registers every adapter in `ADAPTERS`, in this order."""

# isort: off
from pipelines.external.adapters.base import ADAPTERS, Adapter, AdapterSettings
from pipelines.external.adapters import measured, bugfix, codescaler, coderpile, security  # noqa: F401  (register the adapters)
# isort: on

__all__ = ["ADAPTERS", "Adapter", "AdapterSettings"]
