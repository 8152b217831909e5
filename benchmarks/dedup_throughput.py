"""Dedup throughput, memory and accuracy, in one run.

1. Signing speed per core: codepref's vectorised path (token hashes in Rust, n-gram shingles rolled
   in numpy, rensa digests in batches) against the baseline that builds shingle strings and signs
   each document with `datasketch.MinHash.update_batch` (sha1) in a plain loop; plus datasketch and
   rensa each fed the same shingle strings, to compare the libraries at equal input.
2. Accuracy at equal num_perm: mean absolute error of the estimated Jaccard against the exact
   Jaccard of the shingle sets, for datasketch and for codepref's signatures.
3. The whole stage on N documents (issue 23), three ways on the same documents, each its own process tree
   measured from outside (CPU seconds of the tree: `getrusage(RUSAGE_CHILDREN)` before and after, or the sum of
   the sampled per-process CPU times when larger; peak RSS: the largest sum of the RSS of the process and all its
   descendants, sampled every 50 ms):
   - **codepref**: `codepref dedup` with the FnApiRunner multi-processing runner (`--workers` SDK workers), and
     with `running_mode: in_memory` (one process: the runner and its one worker; `--no-in-memory` skips it);
   - **plain loop**: the stage's own DoFns and functions in a Python loop in one process, reading the same shards
     the same way (benchmarks.scale's plain loop); its decisions are checked to equal the stage's;
   - **datatrove** (0.10.1): its four-step MinHash dedup (signatures, buckets, clusters, filter) in its own virtual
     environment (`--datatrove-venv`, made with `python3 -m venv` and `pip install` of DATATROVE when missing; never
     a codepref dependency), as a peer process (benchmarks/dedup_peers.py) with `--workers` processes, on the same
     documents written as JSON Lines. Reported unavailable, with the reason, when it cannot be installed;
     `--no-datatrove` skips it.
   - **process floor** (`process_floor`): `python -c "import pipelines.dedup.stage"` (Beam imported as codepref imports it), the CPU seconds and
     peak RSS of one process that has imported Beam and the stage's code and done nothing else; every codepref process
     pays it, and the default multi-processing runner runs 1 + workers of them.
   The machine's load average is recorded at the start and the end.
4. Precision and recall of the stage's verified pairs against brute-force exact Jaccard on a sample.

Documents are functions of the Python standard library and edited copies of them (benchmarks.corpus.dedup_documents).

    .venv/bin/python -m benchmarks.dedup_throughput [--docs 200000] [--sign-docs 5000] [--workers 2] [--no-datatrove]
        [--json out.json]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from datasketch import MinHash
from rensa import RMinHash

from benchmarks.corpus import candidate, dedup_documents, write_stage
from benchmarks.process_tree import measured, peer_python, process_floor
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


DATATROVE = ["datatrove==0.10.1", "xxhash<4", "regex", "orjson", "tokenizers"]  # what its MinHash steps and JSONL reader import
DEFAULT_DATATROVE_VENV = Path.home() / ".cache" / "codepref" / "bench-venvs" / "datatrove"
PEERS = Path(__file__).with_name("dedup_peers.py")
REPO = Path(__file__).resolve().parents[1]
FLOOR_IMPORTS = "import pipelines.dedup.stage"  # as codepref imports Beam (pipelines/__init__.py: without pandas)
FLOOR_NOTE = ("one Python process that imported Beam and the dedup stage and did nothing else; running_mode in_memory runs one "
              "such process, the default multi-processing runner 1 + workers")


def write_documents(work: Path, docs: list[tuple[str, str]], shards: int) -> None:
    """The documents as a finished `parse` stage (Candidate shards whose chosen side, which dedup's key `after`
    compares, is the text) and as JSON Lines shards for datatrove (`{"id", "text"}`): the same texts, round robin."""
    records = (candidate(doc_id, text, "pass", committed_at=i) for i, (doc_id, text) in enumerate(docs))
    write_stage(work, "parse", records, Candidate, shards=shards)
    jsonl = work / "jsonl"
    jsonl.mkdir()
    for shard in range(shards):
        with open(jsonl / f"part-{shard:05d}.jsonl", "w", encoding="utf-8") as handle:
            handle.writelines(json.dumps({"id": doc_id, "text": text}) + "\n" for doc_id, text in docs[shard::shards])


def run_codepref(work: Path, docs: int, workers: int, shards: int, running_mode: str = "multi_processing") -> dict[str, Any]:
    """`codepref dedup` as a user runs it (`running_mode` in_memory: one process, the runner and its one worker)."""
    config = work / "config.yaml"
    workers = workers if running_mode == "multi_processing" else 1
    config.write_text(json.dumps({
        "num_shards": shards, "runner": {"running_mode": running_mode, "workers": workers},
        "stages": {"dedup": {"ngram": NGRAM, "num_perm": NUM_PERM, "threshold": THRESHOLD}},
    }))
    out = work / "dedup"
    shutil.rmtree(out, ignore_errors=True)
    codepref = Path(sys.executable).with_name("codepref")  # the console script installed beside this interpreter
    result, figures = measured([str(codepref), "dedup", "--in", str(work / "parse"), "--out", str(out), "--config", str(config)])
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-3000:])
    manifest = json.loads((out / "_manifest.json").read_text())
    members = sum(1 for _ in read_rows(str(out / "clusters"), ClusterMember))
    return {"docs": docs, "running_mode": running_mode, "workers": workers, **figures, "docs_per_s": round(docs / figures["seconds"], 1),
            "peak_rss_gb": round(figures["peak_rss_mb"] / 1024, 2), "kept": manifest["records_out"],
            "removed": sum(manifest["dropped"].values()), "dropped": manifest["dropped"], "stage_seconds": manifest["seconds"],
            "cluster_rows": members}


def run_plain(work: Path, docs: int, shards: int) -> dict[str, Any]:
    """The stage's DoFns in a plain loop (benchmarks.scale's, with the same dedup settings), in its own process."""
    from benchmarks.scale import same_output

    command = [sys.executable, "-m", "benchmarks.scale", "--internal", "plain", "--run-dir", str(work), "--stage", "dedup",
               "--num-shards", str(shards)]
    result, figures = measured(command, cwd=REPO)
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-3000:])
    report = json.loads(result.stdout.strip().splitlines()[-1])
    same = same_output(work, "dedup")  # the loop wrote WORK/plain/dedup, the stage WORK/dedup
    return {"docs": docs, **figures, "kept": report["records_out"], "removed": sum(report["dropped"].values()),
            "dropped": report["dropped"], "same_decisions_as_codepref": same["kept_identical"] and same["drops_identical"]}


def run_datatrove(work: Path, docs: int, workers: int, shards: int, python: Path) -> dict[str, Any]:
    command = [str(python), str(PEERS), "datatrove", str(work / "jsonl"), str(work / "datatrove"), "--tasks", str(shards),
               "--workers", str(workers), "--ngram", str(NGRAM)]
    result, figures = measured(command)
    if result.returncode != 0:
        raise RuntimeError(f"datatrove failed: {result.stderr[-3000:]}")
    report = json.loads(result.stdout.strip().splitlines()[-1])
    return {"docs": report["documents"], "workers": workers, **figures, "kept": report["kept"], "removed": report["removed"]}


def whole_stage(docs: list[tuple[str, str]], workers: int, datatrove: Path | None = None, unavailable: str | None = None,
                shards: int = 8, in_memory: bool = True) -> dict[str, Any]:
    """codepref's dedup stage (also in one process with `in_memory`), the plain loop and datatrove on the same documents
    (see the module's docstring)."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        write_documents(work, docs, shards)
        methods = {}
        if in_memory:
            methods["codepref_in_memory"] = run_codepref(work, len(docs), workers, shards, "in_memory")
        methods["codepref"] = run_codepref(work, len(docs), workers, shards)  # last: the plain loop's output is compared with it
        methods["plain_loop"] = run_plain(work, len(docs), shards)
        methods["datatrove"] = (run_datatrove(work, len(docs), workers, shards, datatrove) if datatrove is not None
                                else {"unavailable": unavailable})
    plain_cpu = methods["plain_loop"]["cpu_seconds"]
    for figures in methods.values():
        if "cpu_seconds" in figures:
            figures["docs_per_s_per_core"] = round(figures["docs"] / max(figures["cpu_seconds"], 1e-3), 1)
            figures["cpu_over_plain_loop"] = round(figures["cpu_seconds"] / max(plain_cpu, 1e-3), 2)
    if "peak_rss_mb" in methods["datatrove"]:
        for figures in methods.values():
            figures["rss_over_datatrove"] = round(figures["peak_rss_mb"] / methods["datatrove"]["peak_rss_mb"], 2)
    return methods


def floor_against(floor: dict[str, Any], methods: dict[str, Any]) -> dict[str, Any]:
    """The process floor with its CPU over the plain loop's and, when datatrove ran, its RSS over datatrove's."""
    floor = {**floor, "cpu_over_plain_loop": round(floor["cpu_seconds"] / max(methods["plain_loop"]["cpu_seconds"], 1e-3), 2)}
    if "peak_rss_mb" in methods["datatrove"]:
        floor["rss_over_datatrove"] = round(floor["peak_rss_mb"] / methods["datatrove"]["peak_rss_mb"], 2)
    return floor


def table(methods: dict[str, Any], floor: dict[str, Any] | None = None) -> str:
    lines = ["| method | docs | kept | removed | wall s | CPU s | docs/s/core | peak RSS MB | CPU / plain loop | RSS / datatrove |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, f in methods.items():
        if "cpu_seconds" not in f:
            lines.append(f"| {name} | unavailable: {f['unavailable']} | | | | | | | | |")
            continue
        lines.append(f"| {name} | {f['docs']:,} | {f['kept']:,} | {f['removed']:,} | {f['seconds']:.1f} | {f['cpu_seconds']:.1f} "
                     f"| {f['docs_per_s_per_core']:,.0f} | {f['peak_rss_mb']:,.0f} | {f['cpu_over_plain_loop']:.2f} "
                     f"| {f.get('rss_over_datatrove', '')} |")
    if floor is not None:
        lines.append(f"| process_floor | | | | {floor['seconds']:.1f} | {floor['cpu_seconds']:.1f} | | {floor['peak_rss_mb']:,.0f} "
                     f"| {floor['cpu_over_plain_loop']:.2f} | {floor.get('rss_over_datatrove', '')} |")
    return "\n".join(lines)


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
    parser.add_argument("--workers", type=int, default=2, help="codepref's SDK workers, and datatrove's processes.")
    parser.add_argument("--no-in-memory", action="store_true", help="Skip codepref's one-process run (running_mode in_memory).")
    parser.add_argument("--no-datatrove", action="store_true", help="Skip the datatrove peer (no venv is created).")
    parser.add_argument("--datatrove-venv", type=Path, default=DEFAULT_DATATROVE_VENV, help="The datatrove peer's virtual environment.")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    machine = {"nproc": os.cpu_count(), "load_start": [round(x, 2) for x in os.getloadavg()], "python": platform.python_version()}
    result: dict[str, Any] = {"command": ["python", "-m", "benchmarks.dedup_throughput", *(argv if argv is not None else sys.argv[1:])],
                              "machine": machine}
    docs = dedup_documents(max(args.docs, args.sign_docs, args.sample))
    result["signing"] = signing([t for _, t in docs[: args.sign_docs]])
    result["accuracy"] = accuracy(random.Random(2).sample(docs[: max(args.sample * 4, args.sample)], args.sample))
    stage_docs = docs[: args.docs]
    del docs
    datatrove, unavailable = (None, "skipped (--no-datatrove)") if args.no_datatrove else peer_python(args.datatrove_venv, DATATROVE, "datatrove.pipeline.dedup.minhash, xxhash, orjson")
    result["methods"] = whole_stage(stage_docs, args.workers, datatrove, unavailable, in_memory=not args.no_in_memory)
    result["stage"] = result["methods"]["codepref"]
    result["process_floor"] = floor_against(process_floor(FLOOR_IMPORTS, FLOOR_NOTE), result["methods"])
    machine["load_end"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(result, indent=2, default=lambda v: round(v, 4) if isinstance(v, float) else str(v)))
    print(f"nproc {machine['nproc']}; load average at start {machine['load_start']}, at end {machine['load_end']}")
    print(table(result["methods"], result["process_floor"]))
    print(f"process_floor: {FLOOR_NOTE}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
