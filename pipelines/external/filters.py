"""The drop reasons of the external stage: those every adapter can give, each adapter's own (declared on the
adapter, see pipelines.external.adapters), and those of the caps, shares and pair-id selection."""

from __future__ import annotations

from pipelines.core import DropReasons
from pipelines.external.adapters import ADAPTERS
from pipelines.external.adapters.base import ADAPTER_ROWS

SELECTION = DropReasons("selection", {
    "duplicate_pair": "another row gave the same pair id (the same row twice in a set): one is kept",
    "over_cap": "beyond the source's `cap` (the candidates of lowest pair-id hash are kept)",
    "over_share": "beyond the source's `share` of the mix (the candidates of lowest pair-id hash are kept)",
})

# Every declarer of the stage, in the order its README table lists them.
DECLARERS = (ADAPTER_ROWS, *(ADAPTERS[name] for name in ADAPTERS), SELECTION)
