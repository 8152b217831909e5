"""Dedup throughput, memory and accuracy, in one run.

1. Signing speed per core: codepref's vectorised path (token hashes in Rust, n-gram shingles rolled
   in numpy, rensa digests in batches) against the baseline that builds shingle strings and signs
   each document with `datasketch.MinHash.update_batch` (sha1) in a plain loop; plus datasketch and
   rensa each fed the same shingle strings, to compare the libraries at equal input.
2. Accuracy at equal num_perm: mean absolute error of the estimated Jaccard against the exact
   Jaccard of the shingle sets, for datasketch and for codepref's signatures.
3. Peak memory (RSS of the `codepref dedup` process and all its Beam workers, measured from
   outside) and wall time of the whole stage over N documents with the multi-processing runner.
4. Precision and recall of the stage's verified pairs against brute-force exact Jaccard on a sample.

Documents are functions of the Python standard library and edited copies of them (benchmarks.corpus.dedup_documents).

    .venv/bin/python -m benchmarks.dedup_throughput [--docs 200000] [--sign-docs 5000] [--json out.json]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil
from datasketch import MinHash
from rensa import RMinHash

from benchmarks.corpus import candidate, dedup_documents, write_stage
from parsers import code_tokens
from pipelines.dedup.minhash import (
    estimated_jaccard,
    exact_jaccard,
    shingle_hashes,
    signatures,
    token_hashes,
)
from schemas import Candidate, ClusterMember
from storage import read_rows

NGRAM, NUM_PERM, THRESHOLD = 5, 256, 0.7


def shingle_strings(tokens: list[str]) -> list[bytes]:
    return [" ".join(tokens[i : i + NGRAM]).encode() for i in range(len(tokens) - NGRAM + 1)]


def signing(texts: list[str]) -> dict:
    """Docs/s of tokenise + shingle + sign, one core, from the raw text, for each approach."""
    raw = [t.encode() for t in texts]
    timings = {}
    start = time.perf_counter()
    baseline = []
    for text in texts:
        m = MinHash(num_perm=NUM_PERM)
        m.update_batch(shingle_strings(code_tokens(text)))
        baseline.append(m)
    timings["baseline_datasketch_sha1_docs_s"] = len(texts) / (time.perf_counter() - start)

    start = time.perf_counter()
    for text in texts:
        m = RMinHash(NUM_PERM, 1)
        m.update(shingle_strings(code_tokens(text)))
    timings["rensa_same_shingle_strings_docs_s"] = len(texts) / (time.perf_counter() - start)

    start = time.perf_counter()
    ours = []
    for first in range(0, len(raw), 512):
        ours.extend(signatures(raw[first : first + 512], ngram=NGRAM, num_perm=NUM_PERM, seed=1))
    timings["codepref_vectorised_docs_s"] = len(texts) / (time.perf_counter() - start)
    timings["speedup_vs_baseline"] = timings["codepref_vectorised_docs_s"] / timings["baseline_datasketch_sha1_docs_s"]
    timings["rensa_vs_datasketch_same_input"] = timings["rensa_same_shingle_strings_docs_s"] / timings["baseline_datasketch_sha1_docs_s"]

    # Accuracy at equal num_perm against the exact Jaccard of each approach's own shingle sets.
    string_sets = [set(shingle_strings(code_tokens(t))) for t in texts]
    hash_sets = []
    for text in raw:
        hashes, counts = token_hashes([text])
        hash_sets.append(set(shingle_hashes(hashes, counts, NGRAM)[0].tolist()))
    rng = random.Random(5)
    pairs = [(i, i + 1) for i in range(min(len(texts) - 1, 3000))] + [tuple(rng.sample(range(len(texts)), 2)) for _ in range(2000)]
    errors_ds, errors_ours = [], []
    for i, j in pairs:
        if string_sets[i] and string_sets[j]:
            errors_ds.append(abs(baseline[i].jaccard(baseline[j]) - exact_jaccard(string_sets[i], string_sets[j])))
        if ours[i] is not None and ours[j] is not None:
            errors_ours.append(abs(estimated_jaccard(ours[i], ours[j]) - exact_jaccard(hash_sets[i], hash_sets[j])))
    timings["mae_datasketch"] = float(np.mean(errors_ds))
    timings["mae_codepref"] = float(np.mean(errors_ours))
    return timings


def peak_rss_of(command: list[str], env: dict[str, str]) -> tuple[int, float, subprocess.CompletedProcess]:
    """Run `command`; return (peak RSS of it and all its descendants in bytes, seconds, result), sampled every 100 ms."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    root = psutil.Process(process.pid)
    peak = 0
    while process.poll() is None:
        total = 0
        try:
            for member in [root, *root.children(recursive=True)]:
                try:
                    total += member.memory_info().rss
                except psutil.Error:
                    continue
        except psutil.Error:
            pass
        peak = max(peak, total)
        time.sleep(0.1)
    stdout, stderr = process.communicate()
    return peak, time.perf_counter() - start, subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def whole_stage(docs: list[tuple[str, str]], workers: int) -> dict:
    """The `dedup` stage as a user runs it (`codepref dedup`), in its own process tree, measured from outside."""
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "parse"
        records = [candidate(doc_id, text, "pass", committed_at=i) for i, (doc_id, text) in enumerate(docs)]
        write_stage(Path(tmp), "parse", records, Candidate, shards=8)  # as an upstream stage leaves it
        del records
        config = Path(tmp) / "config.yaml"
        config.write_text(json.dumps({
            "num_shards": 8, "runner": {"running_mode": "multi_processing", "workers": workers},
            "stages": {"dedup": {"ngram": NGRAM, "num_perm": NUM_PERM, "threshold": THRESHOLD}},
        }))
        out = Path(tmp) / "out"
        codepref = Path(sys.executable).with_name("codepref")  # the console script installed beside this interpreter
        command = [str(codepref), "dedup", "--in", str(source), "--out", str(out), "--config", str(config)]
        peak, seconds, result = peak_rss_of(command, dict(os.environ))
        if result.returncode != 0:
            raise RuntimeError(result.stderr[-3000:])
        manifest = json.loads((out / "_manifest.json").read_text())
        members = sum(1 for _ in read_rows(str(out / "clusters"), ClusterMember))
    return {
        "docs": len(docs), "workers": workers, "seconds": round(seconds, 1), "docs_per_s": round(len(docs) / seconds, 1),
        "peak_rss_gb": round(peak / 2**30, 2), "kept": manifest["records_out"], "dropped": manifest["dropped"],
        "stage_seconds": manifest["seconds"], "cluster_rows": members,
    }


def accuracy(docs: list[tuple[str, str]]) -> dict:
    """Verified pairs of the stage's SimilarPairs against brute force on a sample."""
    import apache_beam as beam
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner

    from pipelines.dedup.transforms import Analyse, SimilarPairs

    sets = {}
    for doc_id, text in docs:
        hashes, counts = token_hashes([text.encode()])
        sets[doc_id] = set(shingle_hashes(hashes, counts, NGRAM)[0].tolist())
    truth = {(a, b) for (a, sa), (b, sb) in itertools.combinations(sorted(sets.items()), 2) if sa and sb and exact_jaccard(sa, sb) >= THRESHOLD}
    with tempfile.TemporaryDirectory() as tmp:
        with beam.Pipeline(runner=FnApiRunner()) as pipeline:
            analysed = pipeline | beam.Create([{"id": i, "text": t} for i, t in docs]) | Analyse(
                "bench", "id", lambda r: (0, r["id"]), lambda r: r["text"].encode(), ngram=NGRAM, num_perm=NUM_PERM, seed=1,
                batch_size=512)
            edges, _ = analysed | SimilarPairs(threshold=THRESHOLD, num_perm=NUM_PERM, max_bucket_pairs=64)
            _ = edges | beam.Map(lambda e: f"{e[0]} {e[1]}") | beam.io.WriteToText(f"{tmp}/edges", shard_name_template="")
        predicted = {tuple(line.split()) for line in Path(f"{tmp}/edges").read_text().splitlines()}
    hit = len(predicted & truth)
    return {"sample_docs": len(docs), "true_pairs": len(truth), "predicted_pairs": len(predicted),
            "precision": round(hit / max(1, len(predicted)), 4), "recall": round(hit / max(1, len(truth)), 4)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=200_000, help="Documents for the whole-stage run.")
    parser.add_argument("--sign-docs", type=int, default=5_000, help="Documents for the signing comparison.")
    parser.add_argument("--sample", type=int, default=1_500, help="Documents for the brute-force accuracy check.")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    docs = dedup_documents(max(args.docs, args.sign_docs, args.sample))
    result = {"signing": signing([t for _, t in docs[: args.sign_docs]])}
    result["accuracy"] = accuracy(random.Random(2).sample(docs[: max(args.sample * 4, args.sample)], args.sample))
    stage_docs = docs[: args.docs]
    del docs
    result["stage"] = whole_stage(stage_docs, args.workers)
    print(json.dumps(result, indent=2, default=lambda v: round(v, 4) if isinstance(v, float) else str(v)))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
