"""Judge throughput on CPU with the packaged SmolLM2: `n` samples in one request against `n` requests.

Both ways ask the same vLLM engine (started once) for the same number of answers over the same
pairs in both orders; asking for `n` samples in one request prefills each prompt once.

    .venv/bin/python benchmarks/judge_throughput.py [--pairs 8] [--n 4] [--max-tokens 32]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--n", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=32)
    args = parser.parse_args()

    from pipelines.llm.backends import BACKENDS, Sampling
    from pipelines.llm.judging import ORDERS, JudgeTask
    from pipelines.llm.models import prepare_smollm2
    from pipelines.synthesize.stage import human_eval_rows

    task = JudgeTask()
    rows = human_eval_rows(args.pairs)
    pairs = [{"prompt": r["instruction"], "chosen": r["solution"], "rejected": r["solution"].replace("return", "return not", 1),
              "criterion": "Functional Correctness", "language": "Python", "fence": "python"} for r in rows]
    conversations = [task.format_input({**pair, "order": order}) for pair in pairs for order in ORDERS]
    backend = BACKENDS["vllm"](str(prepare_smollm2()), max_model_len=2048)
    backend.generate(conversations[:1], Sampling(n=1, max_tokens=4))  # start the engine and warm up

    start = time.perf_counter()
    together = backend.generate(conversations, Sampling(n=args.n, max_tokens=args.max_tokens, seed=1))
    one_request = time.perf_counter() - start
    start = time.perf_counter()
    separate = [backend.generate(conversations, Sampling(n=1, max_tokens=args.max_tokens, seed=1 + i)) for i in range(args.n)]
    n_requests = time.perf_counter() - start
    backend.close()

    assert all(len(t) == args.n for t in together) and all(len(r) == len(conversations) for r in separate)
    pairs_judged = args.pairs  # each pair: both orders x n answers
    result = {
        "pairs": args.pairs, "answers_per_pair": 2 * args.n, "max_tokens": args.max_tokens,
        "n_in_one_request_s": round(one_request, 1), "n_separate_requests_s": round(n_requests, 1),
        "pairs_per_minute_n_in_one": round(pairs_judged / one_request * 60, 1),
        "pairs_per_minute_separate": round(pairs_judged / n_requests * 60, 1),
        "speedup": round(n_requests / one_request, 2),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
