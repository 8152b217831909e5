"""Exact and near dedup: known similarities, accuracy against brute force, determinism, short documents."""

from __future__ import annotations

import itertools
import random
import sysconfig
from pathlib import Path

import apache_beam as beam
import pyarrow.parquet as pq
import pytest
from apache_beam.runners.portability.fn_api_runner import FnApiRunner

from parsers import parse
from pipelines.dedup.minhash import (
    exact_jaccard,
    optimal_banding,
    shingle_hashes,
    signatures,
    token_hashes,
)
from pipelines.dedup.transforms import Analyse, SimilarPairs
from schemas import Candidate, ClusterMember
from storage import StageManifest, read_rows
from tests.support.stage_fixtures import candidate, write_stage


def shingles(tokens: list[str], n: int) -> set[int]:
    """The exact shingle set (as the stage hashes it) of a token list, for brute-force Jaccard."""
    hashes, counts = token_hashes([" ".join(tokens).encode()])
    return set(shingle_hashes(hashes, counts, n)[0].tolist())


def numbered(prefix: str, count: int) -> list[str]:
    return [f"{prefix}{i}" for i in range(count)]


def dedup(run_stage, records, **config):
    """The dedup stage over `records` written as a finished `parse` stage, in 3 shards."""
    return run_stage("dedup", config, upstream={"parse": (records, Candidate)}, num_shards=3)


def clusters_of(deduped) -> dict[str, dict]:
    return {member["record_id"]: member for member in deduped.table("clusters", ClusterMember)}


def code(tokens: list[str]) -> str:
    return " ".join(tokens)


def test_near_duplicates_with_known_jaccard(run_stage):
    base = numbered("t", 200)
    # Replacing one token every k positions changes n shingles around each replacement.
    close = [f"x{i}" if i % 50 == 25 else t for i, t in enumerate(base)]  # 4 edits
    far = [f"y{i}" if i % 6 == 3 else t for i, t in enumerate(base)]  # 33 edits
    n = 5
    assert exact_jaccard(shingles(base, n), shingles(close, n)) > 0.8
    assert exact_jaccard(shingles(base, n), shingles(far, n)) < 0.2
    records = [
        candidate("a-base", code(base), "old", committed_at=200),
        candidate("b-close", code(close), "old", committed_at=100),  # earlier: it represents the cluster
        candidate("c-far", code(far), "old", committed_at=50),
    ]
    deduped = dedup(run_stage, records, ngram=n, threshold=0.7)
    (kept, drops, manifest), clusters = deduped, clusters_of(deduped)
    assert set(kept) == {"b-close", "c-far"}
    assert drops["a-base"] == "near_duplicate" and "b-close" in deduped.details["a-base"]
    member = clusters["a-base"]
    assert (member["cluster_id"], member["representative_id"], member["kind"], member["kept"]) == ("b-close", "b-close", "near", False)
    assert abs(member["similarity"] - exact_jaccard(shingles(base, n), shingles(close, n))) < 0.1
    assert clusters["b-close"]["kept"] and "c-far" not in clusters
    assert manifest.dropped == {"near_duplicate": 1}


def test_exact_duplicates_ignore_comments_and_whitespace_and_keep_the_earliest(run_stage):
    one = "def f(x):\n    return x + 1\n"
    two = "def f(x):\n    # add one\n    return   x + 1\n"
    records = []
    for pair_id, text, when in (("p2", one, 10), ("p1", two, 10), ("p3", one, None)):
        facts = parse(text, "python").summary()
        records.append(candidate(pair_id, text, "def f(x):\n    return x\n", committed_at=when, chosen_facts=facts))
    deduped = dedup(run_stage, records, ngram=3)
    (kept, drops, manifest), clusters = deduped, clusters_of(deduped)
    assert set(kept) == {"p1"}  # same time: the smallest id; no time ranks last
    assert drops["p2"] == drops["p3"] == "exact_duplicate"
    assert clusters["p2"]["kind"] == "exact" and clusters["p2"]["representative_id"] == "p1"
    assert manifest.dropped == {"exact_duplicate": 2}


def test_key_selects_the_side_or_the_pair(tmp_path, run_stage):
    shared = code(numbered("s", 60))
    records = [candidate("a", shared, code(numbered("r", 60))), candidate("b", shared, code(numbered("q", 60)))]
    kept, _, _ = dedup(run_stage, records, key="after")
    assert len(kept) == 1
    kept, _, _ = run_stage("dedup", {"key": "pair"}, upstream={"parse": (records, Candidate)}, run_dir=tmp_path / "run2")
    assert len(kept) == 2  # the rejected sides differ entirely
    kept, _, _ = run_stage("dedup", {"key": "before"}, upstream={"parse": (records, Candidate)}, run_dir=tmp_path / "run3")
    assert len(kept) == 2


def test_short_documents_are_kept_and_only_exactly_deduplicated(run_stage):
    records = [
        candidate("s1", "a b", "x"), candidate("s2", "a c", "x"), candidate("s3", "a d", "x"),
        candidate("s4", "a b", "y"),  # exact duplicate of s1's chosen side
    ]
    kept, drops, manifest = dedup(run_stage, records, ngram=5)
    assert set(kept) == {"s1", "s2", "s3"} and drops["s4"] == "exact_duplicate"
    assert manifest.counters["short_documents_not_near_deduplicated"] == 4  # all four are too short to shingle


def real_documents(count: int = 300, seed: int = 3) -> list[tuple[str, list[str]]]:
    """Functions from the Python standard library, plus edited copies at various distances."""
    rng = random.Random(seed)
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    functions: list[list[str]] = []
    for path in sorted(stdlib.glob("*.py"))[:60]:
        source = path.read_bytes()
        facts = parse(source, "python")
        for span in facts.functions:
            body = source[span.start_byte : span.end_byte]
            tokens = list(parse(body, "python").tokens)
            if 60 <= len(tokens) <= 400:
                functions.append(tokens)
    rng.shuffle(functions)
    docs: list[tuple[str, list[str]]] = []
    for index, tokens in enumerate(functions[: count // 3]):
        docs.append((f"d{index:03d}", tokens))
        for copy, rate in enumerate(rng.sample([0.005, 0.01, 0.02, 0.04, 0.08, 0.15], 2)):
            edited = [f"v{rng.randrange(10**6)}" if rng.random() < rate else t for t in tokens]
            docs.append((f"d{index:03d}-{copy}", edited))
    return docs


def test_precision_and_recall_against_brute_force(tmp_path):
    docs = real_documents()
    n, threshold = 5, 0.7
    sets = {doc_id: shingles(tokens, n) for doc_id, tokens in docs}
    truth = {
        (a, b) for (a, sa), (b, sb) in itertools.combinations(sorted(sets.items()), 2)
        if exact_jaccard(sa, sb) >= threshold
    }
    assert len(docs) >= 250 and len(truth) >= 50

    rows = [{"id": doc_id, "tokens": tokens} for doc_id, tokens in docs]
    with beam.Pipeline(runner=FnApiRunner()) as pipeline:
        analysed = pipeline | beam.Create(rows) | Analyse(
            "test", "id", lambda r: (0, r["id"]), lambda r: " ".join(r["tokens"]).encode(), ngram=n, num_perm=256, seed=1,
            batch_size=128,
        )
        edges, _ = analysed | SimilarPairs(threshold=threshold, num_perm=256, max_bucket_pairs=64)
        _ = edges | beam.Map(lambda e: f"{e[0]} {e[1]}") | beam.io.WriteToText(str(tmp_path / "edges"), shard_name_template="")
    predicted = {tuple(line.split()) for line in (tmp_path / "edges").read_text().splitlines()}
    true_positive = len(predicted & truth)
    precision, recall = true_positive / len(predicted), true_positive / len(truth)
    assert precision >= 0.9 and recall >= 0.9, (precision, recall, len(truth))


def test_same_result_with_one_and_two_workers(tmp_path, run_stage):
    records = [candidate(doc_id, code(tokens), "old", committed_at=1000 + i) for i, (doc_id, tokens) in enumerate(real_documents(90))]
    upstream = {"parse": (records, Candidate)}
    one = run_stage("dedup", {"ngram": 5}, upstream=upstream, num_shards=3, run_dir=tmp_path / "one")
    two = run_stage("dedup", {"ngram": 5}, upstream=upstream, num_shards=3, run_dir=tmp_path / "two", running_mode="multi_processing",
                    workers=2)
    assert one.rows.keys() == two.rows.keys() and one.drops == two.drops and one.details == two.details
    assert len(one.drops) > 10  # it did remove something
    for table in ("", "clusters", "_dropped"):
        first = sorted((tmp_path / "one" / "dedup" / table).glob("part-*"))
        second = sorted((tmp_path / "two" / "dedup" / table).glob("part-*"))
        assert [p.name for p in first] == [p.name for p in second] and first
        for a, b in zip(first, second):
            assert pq.read_table(a).to_pylist() == pq.read_table(b).to_pylist()  # row for row, in order


def test_tokens_shingles_and_signatures_units():
    import numpy as np

    hashes, counts = token_hashes([b"def f(x): return x+1", b"", b"caf\xc3\xa9 = 1"])
    assert counts.tolist() == [10, 0, 3]  # def f ( x ) : return x + 1 / nothing / café = 1
    again, _ = token_hashes([b"x"])
    assert hashes[3] == hashes[7] == again[0]  # the same token hashes alike wherever it stands
    shingled, per_doc = shingle_hashes(*token_hashes([b"a b c d", b"e f", b"a b c d"]), 3)
    assert per_doc.tolist() == [2, 0, 2] and shingled[:2].tolist() == shingled[2:].tolist()  # no window spans documents
    sigs = signatures([b"a a a", " ".join(numbered("t", 20)).encode(), " ".join(numbered("t", 20)).encode()],
                      ngram=5, num_perm=64, seed=1)
    assert sigs[0] is None and (sigs[1] == sigs[2]).all() and sigs[1].dtype == np.uint32
    banding = optimal_banding(0.7, 256)
    assert banding.bands * banding.rows <= 256 and len(banding.keys(sigs[1].repeat(4))) == banding.bands


def test_cli_dedup(tmp_path):
    import os
    import subprocess
    import sys

    repo_root = Path(__file__).resolve().parents[3]
    base = numbered("t", 100)
    source = write_stage(tmp_path / "in", "parse", [candidate("a", code(base), "x"), candidate("b", code(base[:-1]), "x")], Candidate)
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "dedup", "--in", str(source), "--out", str(out), "--threshold", "0.8",
         "--ngram", "5", "--num-perm", "128", "--key", "after"],
        capture_output=True, text=True, cwd=repo_root, env={**os.environ, "PYTHONPATH": str(repo_root)}, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "dedup: 2 in, 1 kept" in result.stdout and "near_duplicate 1" in result.stdout
    assert len(list(read_rows(str(out), Candidate))) == 1
    assert StageManifest.read(str(out)).config["num_perm"] == 128


@pytest.mark.parametrize("key", ["sideways"])
def test_bad_key_is_a_config_error(run_stage, key):
    from pipelines.run.config import ConfigError

    with pytest.raises(ConfigError, match="stages.dedup.key"):
        dedup(run_stage, [candidate("a", "x y z", "q")], key=key)
