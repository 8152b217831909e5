"""`python -m pipelines.cli` is `codepref`."""

from pipelines.cli import main

main()
