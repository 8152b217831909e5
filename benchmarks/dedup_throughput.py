"""Dedup throughput, memory and accuracy, in one run.

1. Signing speed per core: codepref's vectorised path (token hashes in Rust, n-gram shingles rolled
   in numpy, rensa digests in batches) against the baseline that builds shingle strings and signs
   each document with `datasketch.MinHash.update_batch` (sha1) in a plain loop; plus datasketch and
   rensa each fed the same shingle strings, to compare the libraries at equal input.
2. Accuracy at equal num_perm: mean absolute error of the estimated Jaccard against the exact
   Jaccard of the shingle sets, for datasketch and for codepref's signatures.
3. Peak memory (RSS of the process and all its Beam workers) and wall time of the whole `dedup`
   stage over N documents with the multi-processing runner.
4. Precision and recall of the stage's verified pairs against brute-force exact Jaccard on a sample.

Documents are functions of the Python standard library and edited copies of them.

    .venv/bin/python benchmarks/dedup_throughput.py [--docs 200000] [--sign-docs 5000]
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import sys
import sysconfig
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import psutil  # noqa: E402
from datasketch import MinHash  # noqa: E402
from rensa import RMinHash  # noqa: E402

from parsers import code_tokens, parse  # noqa: E402
from pipelines.config import RunConfig, import_builtin_stages  # noqa: E402
from pipelines.dedup.minhash import estimated_jaccard, exact_jaccard, shingle_hashes, signatures, token_hashes  # noqa: E402
from pipelines.run import run  # noqa: E402
from schemas import Candidate, ClusterMember  # noqa: E402
from storage import read_rows  # noqa: E402
from tests.stage_fixtures import candidate, write_stage  # noqa: E402

NGRAM, NUM_PERM, THRESHOLD = 5, 256, 0.7


def stdlib_functions(limit: int) -> list[str]:
    out = []
    for path in sorted(Path(sysconfig.get_paths()["stdlib"]).rglob("*.py")):
        try:
            source = path.read_bytes()
        except OSError:
            continue
        for span in parse(source, "python").functions:
            text = source[span.start_byte : span.end_byte].decode("utf-8", "replace")
            if 300 <= len(text) <= 6000:
                out.append(text)
        if len(out) >= limit:
            break
    return out[:limit]


def corpus(count: int, seed: int = 1) -> list[tuple[str, str]]:
    """`count` documents: real functions, a third of them followed by edited copies."""
    rng = random.Random(seed)
    bases = stdlib_functions(max(1, count // 2))
    docs = []
    while len(docs) < count:
        for index, text in enumerate(bases):
            if len(docs) >= count:
                break
            round_ = len(docs) // len(bases)
            if round_ == 0:
                docs.append((f"f{index:06d}", text))
            else:
                tokens = code_tokens(text)
                rate = rng.choice([0.0, 0.01, 0.03, 0.1, 0.3])
                edited = " ".join(f"v{rng.randrange(10**6)}" if rng.random() < rate else t for t in tokens)
                docs.append((f"f{index:06d}-{round_}", edited))
    return docs


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
    pairs = [(i, i + 1) for i in range(0, min(len(texts) - 1, 3000))] + [tuple(rng.sample(range(len(texts)), 2)) for _ in range(2000)]
    errors_ds, errors_ours = [], []
    for i, j in pairs:
        if string_sets[i] and string_sets[j]:
            errors_ds.append(abs(baseline[i].jaccard(baseline[j]) - exact_jaccard(string_sets[i], string_sets[j])))
        if ours[i] is not None and ours[j] is not None:
            errors_ours.append(abs(estimated_jaccard(ours[i], ours[j]) - exact_jaccard(hash_sets[i], hash_sets[j])))
    timings["mae_datasketch"] = float(np.mean(errors_ds))
    timings["mae_codepref"] = float(np.mean(errors_ours))
    return timings


class PeakMemory:
    """Samples the RSS of this process and all its descendants every 100 ms."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            for process in [me, *me.children(recursive=True)]:
                try:
                    total += process.memory_info().rss
                except psutil.Error:
                    continue
            self.peak = max(self.peak, total)
            time.sleep(0.1)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def whole_stage(docs: list[tuple[str, str]], workers: int) -> dict:
    import_builtin_stages()
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        records = [candidate(doc_id, text, "pass", committed_at=i) for i, (doc_id, text) in enumerate(docs)]
        write_stage(run_dir, "parse", records, Candidate)
        del records
        config = RunConfig(run_dir=str(run_dir), num_shards=8, runner={"running_mode": "multi_processing", "workers": workers},
                           stages={"dedup": {"ngram": NGRAM, "num_perm": NUM_PERM, "threshold": THRESHOLD}})
        start = time.perf_counter()
        with PeakMemory() as memory:
            (outcome,) = run(config, force=True)
        seconds = time.perf_counter() - start
        members = list(read_rows(str(run_dir / "dedup" / "clusters"), ClusterMember))
    m = outcome.manifest
    return {
        "docs": len(docs), "workers": workers, "seconds": round(seconds, 1), "docs_per_s": round(len(docs) / seconds, 1),
        "peak_rss_gb": round(memory.peak / 2**30, 2), "kept": m.records_out, "dropped": m.dropped, "cluster_rows": len(members),
    }


def accuracy(docs: list[tuple[str, str]]) -> dict:
    """Verified pairs of the stage's SimilarPairs against brute force on a sample."""
    import apache_beam as beam
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner

    from pipelines.dedup.stage import SimilarPairs

    sets = {}
    for doc_id, text in docs:
        hashes, counts = token_hashes([text.encode()])
        sets[doc_id] = set(shingle_hashes(hashes, counts, NGRAM)[0].tolist())
    truth = {(a, b) for (a, sa), (b, sb) in itertools.combinations(sorted(sets.items()), 2) if sa and sb and exact_jaccard(sa, sb) >= THRESHOLD}
    with tempfile.TemporaryDirectory() as tmp:
        with beam.Pipeline(runner=FnApiRunner()) as pipeline:
            edges, _ = pipeline | beam.Create([{"id": i, "text": t} for i, t in docs]) | SimilarPairs(
                "bench", "id", lambda r: (0, r["id"]), lambda r: r["text"].encode(), threshold=THRESHOLD, ngram=NGRAM,
                num_perm=NUM_PERM, seed=1, max_bucket_pairs=64, batch_size=512)
            _ = edges | beam.Map(lambda e: f"{e[0]} {e[1]}") | beam.io.WriteToText(f"{tmp}/edges", shard_name_template="")
        predicted = {tuple(line.split()) for line in Path(f"{tmp}/edges").read_text().splitlines()}
    hit = len(predicted & truth)
    return {"sample_docs": len(docs), "true_pairs": len(truth), "predicted_pairs": len(predicted),
            "precision": round(hit / max(1, len(predicted)), 4), "recall": round(hit / max(1, len(truth)), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=200_000, help="Documents for the whole-stage run.")
    parser.add_argument("--sign-docs", type=int, default=5_000, help="Documents for the signing comparison.")
    parser.add_argument("--sample", type=int, default=1_500, help="Documents for the brute-force accuracy check.")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    docs = corpus(max(args.docs, args.sign_docs, args.sample))
    result = {"signing": signing([t for _, t in docs[: args.sign_docs]])}
    result["accuracy"] = accuracy(random.Random(2).sample(docs[: max(args.sample * 4, args.sample)], args.sample))
    result["stage"] = whole_stage(docs[: args.docs], args.workers)
    print(json.dumps(result, indent=2, default=lambda v: round(v, 4) if isinstance(v, float) else str(v)))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
