"""Beam stages, run orchestration and the command line."""
