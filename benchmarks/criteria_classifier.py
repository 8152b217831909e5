"""Held-out precision and recall of the `tfidf-logreg` criterion classifier against the seed terms.

Labels are the seed terms' criteria. Each of `--repeats` splits holds out a share of the messages
by a hash of their key, trains on the rest and scores the held-out share; counts are pooled over
the splits. Two modes:

- unmasked: texts as written; the classifier can see the terms, so this measures how well it
  reproduces them (a ceiling, not the use case);
- masked: every seed term is replaced by a mark in training and held-out texts alike, so the
  classifier has only the context to go on, as for the commits the terms miss. Held-out messages
  it tags that the terms did not label count as false positives here, though some are right:
  `--examples` prints a few for reading.

Input: `--commits DIR`, Parquet Commit records written by the mine stage (text = subject, newline,
message; key = repo/commit). Without it, a stand-in for offline machines: human-written change
notes from the Python distributions installed in this environment, namely the bullet items of the
changelog part of each METADATA description (after a changelog heading, from the first version
heading on) and of CHANGES/CHANGELOG/NEWS/HISTORY files among the distributions' files. A bullet
with its continuation lines is one message (subject = the bullet, empty body), credits, links and
issue numbers stripped, duplicates dropped; key = the message. Change notes are shorter and more
edited than commit messages, and lean towards features and packaging, so read the figures as a
sanity check of the method, not as the figures for a commit corpus.

    .venv/bin/python -m benchmarks.criteria_classifier [--commits DIR] [--share 0.3] [--repeats 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import re
import time
from collections import Counter
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from pipelines.synthesize.classifier import (
    TfidfLogReg,
    evaluate,
    held_out_split,
    seed_labelled,
)
from pipelines.synthesize.criteria import SeedTerms
from schemas import CRITERIA, Commit
from storage import read_rows

CHANGELOG_FILE = re.compile(r"(?i)(^|[_-])(changes|changelog|news|history|release[_-]?notes)(\.(txt|md|rst))?$")
CHANGELOG_HEADING = re.compile(r"(?i)\b(change ?log|changes|release notes|release history|history|news|what's new)\b")
VERSION_HEADING = re.compile(r"\bv?\d+\.\d+")
UNDERLINE = re.compile(r"^\s*([=\-~^*+#`])\1{2,}\s*$")
BULLET = re.compile(r"^(\s*)(?:[-*+]|\d+[.)])\s+(.*\S)")
CLEANUPS = [
    (re.compile(r"\[([^\]]*)\]\([^)]*\)"), r"\1"),  # markdown links
    (re.compile(r"`([^`<]*?)\s*<[^>]*>`_{1,2}"), r"\1"),  # RST links
    (re.compile(r":\w+:`([^`]*)`"), r"\1"),  # RST roles
    (re.compile(r"`+([^`]*)`+"), r"\1"),  # code marks
    (re.compile(r"https?://\S+"), ""),
    (re.compile(r"\s*(--\s*)?\bby\s+@[\w-]+(\s*(,|and)\s*@[\w-]+)*(\s+in\s+#?\d+)?"), ""),  # credits
    (re.compile(r"\(\s*(#\d+|gh-\d+)(\s*,\s*(#\d+|gh-\d+))*[^)]*\)"), ""),  # issue references
    (re.compile(r"\s+"), " "),
]


def changelog_lines(text: str, whole: bool) -> list[str]:
    """The changelog part of a text: all of it for a changelog file, else from the first version
    heading after a changelog heading."""
    lines = text.splitlines()
    if whole:
        return lines
    seen_changelog = False
    for index, line in enumerate(lines):
        following = lines[index + 1] if index + 1 < len(lines) else ""
        is_heading = line.lstrip().startswith("#") or (line.strip() and UNDERLINE.match(following))
        if not is_heading:
            continue
        title = CLEANUPS[0][0].sub(r"\1", line.strip().lstrip("#").strip())
        if seen_changelog and len(title) < 80 and VERSION_HEADING.search(title):
            return lines[index:]
        seen_changelog = seen_changelog or bool(CHANGELOG_HEADING.search(title))
    return []


def bullet_messages(lines: list[str]) -> list[str]:
    """Bullet items with their continuation lines, cleaned; items under three words are left out."""
    items, current, indent = [], None, 0
    for line in lines + [""]:
        bullet = BULLET.match(line)
        continues = current is not None and line.strip() and not bullet and len(line) - len(line.lstrip()) > indent
        if continues:
            current.append(line.strip())
            continue
        if current is not None:
            items.append(" ".join(current))
            current = None
        if bullet:
            indent, current = len(bullet.group(1)), [bullet.group(2)]
    messages = []
    for item in items:
        for pattern, replacement in CLEANUPS:
            item = pattern.sub(replacement, item)
        item = item.strip(" .;,-")
        if len(item.split()) >= 3 and "first contribution" not in item and "Full Changelog" not in item:
            messages.append(item)
    return messages


def installed_change_notes() -> tuple[list[dict], dict]:
    """Change notes of the installed distributions as Commit-like rows (subject = the note), deduplicated."""
    seen: dict[str, dict] = {}
    per_distribution: Counter[str] = Counter()
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"] or "?"
        texts = [(dist.metadata.get_payload() or dist.metadata.get("Description") or "", False)]
        for file in dist.files or ():
            if CHANGELOG_FILE.search(file.name):
                try:
                    texts.append((file.read_text(encoding="utf-8"), True))
                except (OSError, UnicodeDecodeError, ValueError):
                    continue
        for text, whole in texts:
            for message in bullet_messages(changelog_lines(text, whole)):
                key = re.sub(r"\W+", " ", message.casefold()).strip()
                if key not in seen:
                    seen[key] = {"key": key, "subject": message, "message": ""}
                    per_distribution[name] += 1
    return list(seen.values()), {"distributions": len(per_distribution), "top": per_distribution.most_common(8)}


def commit_rows(directory: str) -> list[dict]:
    rows = []
    for row in read_rows(directory, Commit):
        rows.append({"key": f"{row['repo']}/{row['commit']}", "subject": row["subject"], "message": row["message"]})
    return rows


def measure(rows: list[dict], mask: bool, share: float, repeats: int, threshold: float, examples: int) -> dict:
    terms = SeedTerms()
    texts, labels = seed_labelled(rows, terms, mask_terms=mask)
    keys = [row["key"] for row in rows]
    pooled = {c: Counter() for c in CRITERIA}
    train_s = predict_s = 0.0
    predicted_texts = 0
    shown: list[dict] = []
    for seed in range(repeats):
        train, held_out = held_out_split(keys, share, seed=seed)
        start = time.perf_counter()
        model = TfidfLogReg.train([texts[i] for i in train], [labels[i] for i in train], seed=seed)
        train_s += time.perf_counter() - start
        held_texts, held_labels = [texts[i] for i in held_out], [labels[i] for i in held_out]
        start = time.perf_counter()
        figures = evaluate(model, held_texts, held_labels, threshold)
        predict_s += time.perf_counter() - start
        predicted_texts += len(held_texts)
        for criterion, f in figures.items():
            hits = round(f["recall"] * f["support"])
            pooled[criterion].update(tp=hits, fn=f["support"] - hits, fp=f["predicted"] - hits)
        if seed == 0 and examples:
            for text, truth, tags in zip(held_texts, held_labels, model.tag(held_texts, threshold)):
                if tags and not truth and len(shown) < examples:
                    shown.append({"text": text.strip(), "tagged": tags})
    per_criterion = {}
    for criterion, c in pooled.items():
        precision = c["tp"] / (c["tp"] + c["fp"]) if c["tp"] + c["fp"] else 0.0
        recall = c["tp"] / (c["tp"] + c["fn"]) if c["tp"] + c["fn"] else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_criterion[criterion] = {"precision": round(precision, 3), "recall": round(recall, 3), "f1": round(f1, 3),
                                    "support": c["tp"] + c["fn"], "predicted": c["tp"] + c["fp"],
                                    "positives": sum(criterion in row for row in labels)}
    return {
        "mode": "masked" if mask else "unmasked",
        "messages": len(rows),
        "labelled": sum(bool(row) for row in labels),
        "held_out_share": share,
        "repeats": repeats,
        "threshold": threshold,
        "train_s_per_split": round(train_s / repeats, 3),
        "predict_msgs_per_s": round(predicted_texts / predict_s) if predict_s else None,
        "criteria": per_criterion,
        "examples_tagged_without_terms": shown,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--commits", help="Directory of Parquet Commit records (the mine stage's output).")
    parser.add_argument("--share", type=float, default=0.3, help="Held-out share of the messages per split.")
    parser.add_argument("--repeats", type=int, default=3, help="Splits (seeds 0..N-1); counts are pooled over them.")
    parser.add_argument("--threshold", type=float, default=0.5, help="Probability at which a criterion is tagged.")
    parser.add_argument("--examples", type=int, default=8, help="Held-out messages without seed terms that the masked classifier tags, to print.")
    parser.add_argument("--json", type=Path, help="Also write the results here.")
    args = parser.parse_args(argv)

    if args.commits:
        rows, source = commit_rows(args.commits), {"corpus": f"commits in {args.commits}"}
    else:
        rows, source = installed_change_notes()
        source["corpus"] = "change notes of the installed Python distributions (stand-in)"
    console = Console(width=160)
    console.print(f"{source['corpus']}: {len(rows)} messages" +
                  (f" from {source['distributions']} distributions (most: {source['top']})" if "top" in source else ""))
    TfidfLogReg.train(["warm up the imports", "before timing"], [list(CRITERIA), []])
    results = [measure(rows, mask, args.share, args.repeats, args.threshold, args.examples) for mask in (False, True)]

    table = Table("mode", "criterion", "positives", "held-out support", "predicted", "precision", "recall", "F1",
                  title=f"tfidf-logreg vs seed terms, held-out share {args.share}, {args.repeats} splits pooled, threshold {args.threshold}")
    for result in results:
        for criterion, f in result["criteria"].items():
            table.add_row(result["mode"], criterion, str(f["positives"]), str(f["support"]), str(f["predicted"]),
                          f"{f['precision']:.3f}", f"{f['recall']:.3f}", f"{f['f1']:.3f}")
        table.add_section()
    console.print(table)
    for result in results:
        console.print(f"{result['mode']}: {result['labelled']} of {result['messages']} messages labelled by the seed terms; "
                      f"train {result['train_s_per_split']} s per split, predict {result['predict_msgs_per_s']} messages/s")
    masked = results[1]
    if masked["examples_tagged_without_terms"]:
        console.print("masked, held-out messages the terms left unlabelled but the classifier tagged (split 0):")
        for example in masked["examples_tagged_without_terms"]:
            console.print(f"  [{', '.join(example['tagged'])}] {example['text'][:140]}", markup=False, highlight=False)
    summary = {"source": source, "results": results}
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    return summary


if __name__ == "__main__":
    main()
