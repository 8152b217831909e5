"""The peer `benchmarks/dedup_throughput.py` measures against `codepref dedup`: datatrove's MinHash dedup, the
four-step pipeline of its README example (signatures, buckets, clusters, filter), run in its own process under
datatrove's own virtual environment (datatrove is never a dependency of codepref), so it imports nothing from
codepref and is timed and measured (CPU, peak memory) from outside.

Input: a folder of JSON Lines shards, one `{"id", "text"}` document a line (the text codepref dedups: a pair's
chosen side). Output: the kept documents in `WORK/kept/`, and one JSON object on stdout (documents in, kept,
removed).

NLTK's English word tokenizer (datatrove's default) needs the `punkt_tab` data, which is not installed offline,
and is made for prose; the documents are code, so the tokenizer here splits words and single punctuation
characters, as codepref's MinHash does.

    <venv>/bin/python benchmarks/dedup_peers.py datatrove INPUT_DIR WORK_DIR [--tasks 8] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def datatrove(input_dir: str, work: str, tasks: int, workers: int, ngram: int) -> dict[str, int]:
    import regex
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup.minhash import (
        MinhashConfig,
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
        MinhashDedupSignature,
    )
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter
    from datatrove.utils.word_tokenizers import WordTokenizer

    class CodeTokenizer(WordTokenizer):
        """Words and single punctuation characters (code, not prose)."""

        pattern = regex.compile(r"\w+|[^\w\s]")

        def word_tokenize(self, text: str) -> list[str]:
            return self.pattern.findall(text)

        def sent_tokenize(self, text: str) -> list[str]:
            return [text]

        def span_tokenize(self, text: str) -> list[tuple[int, int]]:
            return [match.span() for match in self.pattern.finditer(text)]

    config = MinhashConfig(n_grams=ngram)  # datatrove's defaults otherwise: 14 buckets of 8 hashes, 64-bit xxhash
    base = Path(work)
    logs = str(base / "logs")
    signatures = LocalPipelineExecutor(
        pipeline=[JsonlReader(input_dir), MinhashDedupSignature(output_folder=str(base / "signatures"), config=config,
                                                               language=CodeTokenizer("code"))],
        tasks=tasks, workers=workers, logging_dir=f"{logs}/signatures",
    )
    buckets = LocalPipelineExecutor(
        pipeline=[MinhashDedupBuckets(input_folder=str(base / "signatures"), output_folder=str(base / "buckets"), config=config)],
        tasks=config.num_buckets, workers=workers, logging_dir=f"{logs}/buckets", depends=signatures,
    )
    clusters = LocalPipelineExecutor(
        pipeline=[MinhashDedupCluster(input_folder=str(base / "buckets"), output_folder=str(base / "remove_ids"), config=config)],
        tasks=1, logging_dir=f"{logs}/clusters", depends=buckets,
    )
    kept = LocalPipelineExecutor(
        pipeline=[JsonlReader(input_dir), MinhashDedupFilter(input_folder=str(base / "remove_ids")),
                  JsonlWriter(str(base / "kept"), compression=None)],
        tasks=tasks, workers=workers, logging_dir=f"{logs}/filter", depends=clusters,
    )
    kept.run()
    documents = sum(1 for path in Path(input_dir).glob("*.jsonl") for _ in path.open(encoding="utf-8"))
    kept_documents = sum(1 for path in (base / "kept").glob("*.jsonl") for _ in path.open(encoding="utf-8"))
    return {"documents": documents, "kept": kept_documents, "removed": documents - kept_documents}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("peer", choices=["datatrove"])
    parser.add_argument("input_dir")
    parser.add_argument("work")
    parser.add_argument("--tasks", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--ngram", type=int, default=5)
    args = parser.parse_args()
    os.environ.setdefault("DATATROVE_COLORIZE_LOGS", "0")
    result = datatrove(args.input_dir, args.work, args.tasks, args.workers, args.ngram)
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
