"""Step time of the reward-model trainer (`pipelines.train`) on each device asked for, in one run.

A random Llama (benchmarks.tiny_model, the tests' size by default: hidden 32, 2 layers; bigger through
the flags) and its tiny tokenizer train for `--steps` optimizer steps on a generated corpus of code
pairs (benchmarks.corpus.write_train_corpus) through `pipelines.train.train`, the whole path: tokenized
pairs, collation, forward of chosen and rejected together, LM loss, backward, clipping, AdamW, scheduler. Each device runs
in a fresh process (accelerate keeps one device per process). Reported per device: median and
mean milliseconds per optimizer step after `--warmup` steps, pairs and padded tokens per second.

    .venv/bin/python -m benchmarks.gpu_train_step [--device cpu cuda] [--steps 20] [--hidden 512 --layers 8] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.corpus import write_train_corpus
from benchmarks.tiny_model import random_llama

PACKAGE_ROOT = Path(__file__).resolve().parents[1]  # where `python -m benchmarks.gpu_train_step` runs the workers

def worker(args: argparse.Namespace) -> dict[str, Any]:
    """Train on one device in this process; the timings come from the trainer's own metrics lines."""
    import torch

    from pipelines.train import TrainConfig, train

    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device here")
    if args.threads:
        torch.set_num_threads(args.threads)
    work = Path(args.work)
    config = TrainConfig(
        model=args.model, data=[args.corpus], output_dir=str(work / f"run-{args.device}"), max_length=args.max_length,
        batch_size=args.batch_size, gradient_accumulation=1, max_steps=args.steps + args.warmup, learning_rate=1e-4,
        gradient_checkpointing=args.gradient_checkpointing, bf16="auto", cpu=args.device == "cpu", save_every=0,
        log_every=1, seed=0, cache_dir=str(work / "cache"))
    result = train(config)
    lines = [json.loads(line) for line in Path(result.metrics_file).read_text(encoding="utf-8").splitlines()]
    start = next(line for line in lines if line["event"] == "start")
    timed = [line["step_seconds"] for line in lines if line["event"] == "step" and line["step"] > args.warmup]
    if args.device == "cuda":
        name = torch.cuda.get_device_name(0)
    else:
        name = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}"
    mean_tokens = _mean_padded_tokens(args, result)
    median = statistics.median(timed)
    return {
        "device": args.device, "device_name": name, "mixed_precision": start["mixed_precision"], "steps_timed": len(timed),
        "ms_per_step_median": 1000 * median, "ms_per_step_mean": 1000 * statistics.fmean(timed),
        "pairs_per_second": args.batch_size / median, "padded_tokens_per_step": mean_tokens,
        "padded_tokens_per_second": mean_tokens / median, "final_loss": result.final_metrics.get("loss"),
    }


def _mean_padded_tokens(args: argparse.Namespace, result: Any) -> float:
    """Tokens a step's forward pass sees: 2 x batch x the longest sequence of the micro-batch, averaged over the steps."""
    from transformers import AutoTokenizer

    from pipelines.train.data import PairEncoder, prepare_pairs
    from pipelines.train.trainer import StepPlan

    encoder = PairEncoder(AutoTokenizer.from_pretrained(args.model), args.max_length)
    data = prepare_pairs([args.corpus], encoder, str(Path(args.work) / "cache"), 1, None)
    plan = StepPlan(data.pairs_kept, args.batch_size, 1, 1, 0, 1, result.total_steps)
    sizes = []
    for step in range(args.warmup, result.total_steps):
        rows = data.pairs[plan.micro_batch(step, 0, 0)]
        sizes.append(2 * args.batch_size * max(len(s) for s in rows["chosen_ids"] + rows["rejected_ids"]))
    return statistics.fmean(sizes)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", nargs="+", default=["cpu"], choices=["cpu", "cuda"], help="Devices to time, each in its own process.")
    parser.add_argument("--steps", type=int, default=20, help="Timed optimizer steps per device.")
    parser.add_argument("--warmup", type=int, default=3, help="Steps run before timing starts.")
    parser.add_argument("--batch-size", type=int, default=4, help="Pairs per step.")
    parser.add_argument("--max-length", type=int, default=256, help="Most tokens per conversation.")
    parser.add_argument("--lines", type=int, default=4, help="Code lines per generated response.")
    parser.add_argument("--pairs", type=int, default=128, help="Pairs in the generated corpus.")
    parser.add_argument("--hidden", type=int, default=32, help="Hidden size of the random Llama (32 = the test fixture).")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0: its default); 1 is steadier on a busy machine.")
    parser.add_argument("--json", type=Path, help="Also write the results here.")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--corpus", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        args.device = args.device[0]
        result = worker(args)
        print("RESULT " + json.dumps(result))
        return result

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model = str(random_llama(work / "model", hidden=args.hidden, layers=args.layers, heads=args.heads, max_length=args.max_length))
        corpus = write_train_corpus(work / "corpus", args.pairs, args.lines, seed=0)
        results = []
        for device in args.device:
            command = [sys.executable, "-m", "benchmarks.gpu_train_step", "--worker", "--device", device, "--work", str(work),
                       "--model", model, "--corpus", corpus, *_shared_flags(args)]
            done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=PACKAGE_ROOT)
            lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
            if done.returncode != 0 or not lines:
                results.append({"device": device, "error": done.stderr.strip().splitlines()[-1:] or [f"exit {done.returncode}"]})
                continue
            results.append(json.loads(lines[-1].removeprefix("RESULT ")))
    summary = {"model": {"hidden": args.hidden, "layers": args.layers, "heads": args.heads}, "batch_size": args.batch_size,
               "max_length": args.max_length, "results": results}
    if len(results) == 2 and all("ms_per_step_median" in r for r in results):
        summary["speedup_second_vs_first"] = results[0]["ms_per_step_median"] / results[1]["ms_per_step_median"]
    text = json.dumps(summary, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n", encoding="utf-8")
    return summary


def _shared_flags(args: argparse.Namespace) -> list[str]:
    flags = ["--steps", args.steps, "--warmup", args.warmup, "--batch-size", args.batch_size, "--max-length", args.max_length,
             "--hidden", args.hidden, "--layers", args.layers, "--heads", args.heads, "--threads", args.threads]
    return [str(f) for f in flags] + (["--gradient-checkpointing"] if args.gradient_checkpointing else [])


if __name__ == "__main__":
    main()
