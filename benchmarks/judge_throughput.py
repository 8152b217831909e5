"""Judge throughput on CPU with the packaged SmolLM2: `n` samples in one request against `n` requests.

Both ways ask the same vLLM engine (started once) for the same number of answers over the same
pairs in both orders, all requests submitted at once: `n` samples in one request (the prompt is
prefilled once) against `n` one-sample requests with their own seeds. After one untimed pass of
each, the two are timed alternately `--repeats` times (so neither pays the first batch or gains
from the machine warming up), and the medians are compared. `--constrained` makes every answer a
bare verdict tag (the same length both ways: prefill dominates, as with long judge prompts). The engine is the
process's shared one for that model (`llm.backends.acquire_backend`), as the label stage gets it.

    .venv/bin/python -m benchmarks.judge_throughput [--pairs 8] [--n 4] [--max-tokens 32] [--repeats 3] [--constrained]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--n", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--constrained", action="store_true")
    parser.add_argument("--model", default="smollm2", help="Model folder; smollm2 (default): the packaged one, converted on first use.")
    parser.add_argument("--json", type=Path, help="Also write the results here.")
    args = parser.parse_args(argv)

    from llm.backends import BackendConfig, Sampling, acquire_backend, release_backend
    from llm.judging import ORDERS, VERDICT_PATTERN, JudgeTask
    from pipelines.synthesize.stage import human_eval_rows

    task = JudgeTask()
    rows = human_eval_rows(args.pairs)
    pairs = [{"prompt": r["instruction"], "chosen": r["solution"], "rejected": r["solution"].replace("return", "return not", 1),
              "criterion": "Functional Correctness", "language": "Python", "fence": "python"} for r in rows]
    conversations = [task.format_input({**pair, "order": order}) for pair in pairs for order in ORDERS]
    regex = VERDICT_PATTERN if args.constrained else None
    config = BackendConfig(backend="vllm", model=args.model, max_model_len=2048)
    backend = acquire_backend(config)

    def together() -> list[list[str]]:
        return backend.generate(conversations, Sampling(n=args.n, max_tokens=args.max_tokens, regex=regex), seeds=[1] * len(conversations))

    def separate() -> list[list[str]]:
        # The same answers asked for as n one-sample requests each, all in one batch.
        requests = [c for c in conversations for _ in range(args.n)]
        seeds = [1 + i for _ in conversations for i in range(args.n)]
        return backend.generate(requests, Sampling(n=1, max_tokens=args.max_tokens, regex=regex), seeds=seeds)

    def timed(fn: Callable[[], list[list[str]]]) -> tuple[float, int]:
        start = time.perf_counter()
        answers = fn()
        seconds = time.perf_counter() - start
        assert all(isinstance(a, list) for a in answers)
        return seconds, sum(len(text) for texts in answers for text in texts)

    timed(together), timed(separate)  # untimed: engine start, first batches of each shape
    times: dict[str, list[float]] = {"together": [], "separate": []}
    chars: dict[str, list[int]] = {"together": [], "separate": []}
    for round_ in range(args.repeats):
        for name in (("together", "separate") if round_ % 2 == 0 else ("separate", "together")):
            seconds, length = timed(together if name == "together" else separate)
            times[name].append(seconds)
            chars[name].append(length)
    release_backend(config)

    one, many = statistics.median(times["together"]), statistics.median(times["separate"])
    result = {
        "pairs": args.pairs, "answers_per_pair": 2 * args.n, "max_tokens": args.max_tokens, "constrained": args.constrained,
        "repeats": args.repeats,
        "n_in_one_request_s": [round(t, 1) for t in times["together"]], "n_separate_requests_s": [round(t, 1) for t in times["separate"]],
        "answer_chars_n_in_one": chars["together"], "answer_chars_separate": chars["separate"],
        "pairs_per_minute_n_in_one": round(args.pairs / one * 60, 1),
        "pairs_per_minute_separate": round(args.pairs / many * 60, 1),
        "speedup_median": round(many / one, 2),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
