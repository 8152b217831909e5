"""Benchmarks of codepref, each run as a module (`python -m benchmarks.<name>`); figures and machines in RESULTS.md."""
