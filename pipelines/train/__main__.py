"""`python -m pipelines.train --config FILE.yaml`: a TrainConfig from YAML, then `train` (launcher-friendly)."""

from __future__ import annotations

import argparse
import json
import logging
import os
from dataclasses import asdict
from pathlib import Path

import yaml
from pydantic import ValidationError

from pipelines.train import TrainConfig, train


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pipelines.train", description="Train a Bradley-Terry reward model.")
    parser.add_argument("--config", required=True, type=Path, help="YAML file holding the TrainConfig fields.")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = TrainConfig.model_validate(yaml.safe_load(args.config.read_text(encoding="utf-8")) or {})
    except (OSError, yaml.YAMLError, ValidationError) as error:
        raise SystemExit(f"{args.config}: {error}") from None
    result = train(config)
    if os.environ.get("RANK", "0") == "0":  # under a launcher, the main process reports
        print(json.dumps(asdict(result), indent=2))


if __name__ == "__main__":
    main()
