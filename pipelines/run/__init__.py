"""The orchestrator: run order, attempts, manifests, conservation checks, locks, local runners, progress."""
