"""Human review round trip: a blind, stratified sample of judged pairs out, reviewers' verdicts back in.

`sample` draws pairs stratified by criterion x language x margin bucket, shows each as a blind A/B
item (which side is A is drawn per item) in items.jsonl, items.csv and review.html (a static page:
click A, B or TIE, then save a verdict file, made in the browser as a Blob), and keeps the side
mapping, the judges' majority and the ground truth only in review_key.json, which the reviewer
must not see. `import_verdicts` reads a verdict file against the key and reports how often the
judges agree with the reviewer, and the reviewer with the ground truth, with Wilson intervals.
"""

from __future__ import annotations

import csv
import hashlib
import json
import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from audit.agreement import cohen_kappa, proportion
from audit.judged import AuditError, fetch_dicts, open_judged
from audit.metrics import GROUND_TRUTHS
from audit.report import template

ITEMS_JSONL = "items.jsonl"
ITEMS_CSV = "items.csv"
REVIEW_PAGE = "review.html"
KEY_FILE = "review_key.json"
IMPORT_REPORT = "import_report.json"
KEY_FORMAT = "codepref review key v1"
HUMAN_VERDICTS = ("A", "B", "TIE")
REVIEW_SIDES = ("chosen", "rejected", "neither")  # a human TIE, or votes with no majority side, are "neither"
ITEM_FIELDS = ("item_id", "criterion", "language", "prompt", "response_a", "response_b")
# (name, lower bound inclusive, upper bound exclusive); margins lie in [-1, 1].
MARGIN_BUCKETS = (("negative", -2.0, 0.0), ("weak", 0.0, 0.5), ("strong", 0.5, 1.0), ("unanimous", 1.0, 2.0))


def margin_bucket(margin: float) -> str:
    """negative (< 0), weak [0, 0.5), strong [0.5, 1), unanimous (1: every vote a match)."""
    for name, low, high in MARGIN_BUCKETS:
        if low <= margin < high:
            return name
    raise ValueError(f"margin {margin} is outside [-1, 1]")


def _allocate(strata: dict[tuple, list[dict]], size: int, rng: random.Random) -> list[dict]:
    """Round robin over strata: every stratum gives an item before any gives a second; in the last round,
    which strata give one is drawn at random."""
    picked: list[dict] = []
    keys = sorted(strata)
    depth = 0
    while len(picked) < size:
        open_strata = [k for k in keys if len(strata[k]) > depth]
        if not open_strata:
            break
        wanted = size - len(picked)
        if len(open_strata) > wanted:
            open_strata = sorted(rng.sample(open_strata, wanted))
        picked.extend(strata[k][depth] for k in open_strata)
        depth += 1
    return picked


def sample(run_dir: str | Path, out: str | Path, size: int, seed: int = 0) -> dict[str, Any]:
    """Write a blind review sample of `size` pairs (fewer when the run has fewer) into `out`.

    Files: items.jsonl, items.csv and review.html for the reviewer; review_key.json (the A/B
    mapping, judges' side and ground truth) for import_verdicts only. Returns a summary.
    """
    if size < 1:
        raise AuditError(f"sample size must be at least 1, got {size}")
    out = Path(out)
    rng = random.Random(seed)
    with open_judged(run_dir) as db:
        pairs = fetch_dicts(db, """
            SELECT pair_key, pair_id, criterion, language, source, margin, verified, commit_direction, side
            FROM pair_subjects ORDER BY pair_id, pair_key
        """)
        strata: dict[tuple, list[dict]] = defaultdict(list)
        for pair in pairs:
            pair["margin_bucket"] = margin_bucket(pair["margin"])
            strata[(pair["criterion"], pair["language"], pair["margin_bucket"])].append(pair)
        for key in sorted(strata):
            rng.shuffle(strata[key])
        if not pairs:
            raise AuditError(f"{Path(run_dir) / 'label'}: no judged pairs to sample")
        picked = _allocate(strata, size, rng)
        rng.shuffle(picked)  # the reviewer sees no stratum order
        texts = {row["pair_key"]: row for row in fetch_dicts(db, """
            SELECT pair_key, candidate.prompt AS prompt, candidate.chosen AS chosen, candidate.rejected AS rejected
            FROM raw WHERE pair_key IN (SELECT UNNEST(?::BIGINT[]))
        """, [[p["pair_key"] for p in picked]])}

    items, keys = [], []
    for index, pair in enumerate(picked, start=1):
        item_id = f"item-{index:04d}"
        a_side = "chosen" if rng.random() < 0.5 else "rejected"
        text = texts[pair["pair_key"]]
        b_side = "rejected" if a_side == "chosen" else "chosen"
        items.append({"item_id": item_id, "criterion": pair["criterion"], "language": pair["language"], "prompt": text["prompt"],
                      "response_a": text[a_side], "response_b": text[b_side]})
        keys.append({
            "item_id": item_id, "pair_id": pair["pair_id"], "a_side": a_side, "criterion": pair["criterion"],
            "language": pair["language"], "source": pair["source"], "margin": pair["margin"], "margin_bucket": pair["margin_bucket"],
            "judge_side": pair["side"] or "neither",
            "ground_truth": [kind for kind, flag in (("verified", pair["verified"]), ("commit", pair["commit_direction"])) if flag],
        })
    sample_id = hashlib.blake2b(json.dumps([seed, [(k["item_id"], k["pair_id"], k["a_side"]) for k in keys]]).encode(),
                                digest_size=6).hexdigest()
    counts: dict[tuple, int] = defaultdict(int)
    for pair in picked:
        counts[(pair["criterion"], pair["language"], pair["margin_bucket"])] += 1
    key = {
        "format": KEY_FORMAT, "sample": sample_id, "run_dir": str(run_dir), "seed": seed, "requested": size, "items": keys,
        "strata": [{"criterion": c, "language": l, "margin_bucket": b, "available": len(strata[(c, l, b)]), "sampled": counts[(c, l, b)]}
                   for c, l, b in sorted(strata)],
    }
    out.mkdir(parents=True, exist_ok=True)
    with (out / ITEMS_JSONL).open("w", encoding="utf-8") as handle:
        for item in items:
            handle.write(json.dumps(item, ensure_ascii=False) + "\n")
    with (out / ITEMS_CSV).open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=[*ITEM_FIELDS, "verdict", "comment"])
        writer.writeheader()
        writer.writerows({**item, "verdict": "", "comment": ""} for item in items)
    (out / REVIEW_PAGE).write_text(template("review.html.j2").render(items=items, sample=sample_id), encoding="utf-8")
    (out / KEY_FILE).write_text(json.dumps(key, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return {"sample": sample_id, "items": len(items), "requested": size, "strata": len(strata),
            "files": {name: str(out / name) for name in (ITEMS_JSONL, ITEMS_CSV, REVIEW_PAGE, KEY_FILE)}}


def _read_key(key: str | Path) -> tuple[Path, dict[str, Any]]:
    path = Path(key)
    if path.is_dir():
        if not (path / KEY_FILE).exists():
            raise AuditError(f"{path}: no {KEY_FILE}; pass the key file that `sample` wrote (OUT/{KEY_FILE})")
        path = path / KEY_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise AuditError(f"{path}: cannot read the review key ({error})") from None
    if not isinstance(data, dict) or data.get("format") != KEY_FORMAT:
        raise AuditError(f"{path}: not a review key ({KEY_FORMAT!r}); pass the {KEY_FILE} that `sample` wrote")
    return path, data


@dataclass(frozen=True)
class _Unreadable:
    """A verdict line that is not JSON."""

    error: str
    text: str


def _verdict_records(path: Path) -> list[tuple[int, Any]]:
    """(line number, parsed record or the error text) of a JSONL or CSV verdict file; blank lines skipped."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise AuditError(f"{path}: cannot read the verdict file ({error})") from None
    records: list[tuple[int, Any]] = []
    if path.suffix.lower() == ".csv":
        reader = csv.DictReader(text.splitlines(keepends=True))
        if reader.fieldnames is None or not {"item_id", "verdict"} <= set(reader.fieldnames):
            raise AuditError(f"{path}: a CSV verdict file needs the columns item_id and verdict (items.csv has both)")
        start = reader.line_num + 1
        for row in reader:
            if (row.get("verdict") or "").strip():  # an empty verdict cell is an item not yet reviewed
                records.append((start, {k: v for k, v in row.items() if k in ("item_id", "verdict", "comment", "reviewer")}))
            start = reader.line_num + 1
        return records
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append((number, json.loads(line)))
        except json.JSONDecodeError as error:
            records.append((number, _Unreadable(f"not JSON: {error.msg} at column {error.colno}", line)))
    return records


def import_verdicts(key: str | Path, verdicts: str | Path, out: str | Path | None = None) -> dict[str, Any]:
    """Reviewer verdicts (JSONL from review.html, or items.csv with its verdict column filled) against a review key.

    `key` is review_key.json or the sample folder holding it. Malformed lines are listed with their
    line numbers in `malformed` (and left out of every rate). Writes the report as JSON to `out` when given.
    """
    key_path, key_data = _read_key(key)
    verdicts = Path(verdicts)
    items = {item["item_id"]: item for item in key_data["items"]}
    answers: dict[str, tuple[int, str]] = {}
    malformed: list[dict[str, Any]] = []

    def bad(line: int, error: str, record: Any) -> None:
        malformed.append({"line": line, "error": error, "text": (record if isinstance(record, str) else json.dumps(record))[:200]})

    for line, record in _verdict_records(verdicts):
        if isinstance(record, _Unreadable):
            bad(line, record.error, record.text)
            continue
        if not isinstance(record, dict):
            bad(line, "not a JSON object", record)
            continue
        item_id, verdict = record.get("item_id"), record.get("verdict")
        if not isinstance(item_id, str) or not item_id:
            bad(line, "no item_id", record)
        elif item_id not in items:
            bad(line, f"unknown item_id {item_id!r} (not in {key_path.name})", record)
        elif record.get("sample") not in (None, key_data["sample"]):
            bad(line, f"verdict of sample {record.get('sample')!r}, but the key is of sample {key_data['sample']!r}", record)
        elif not isinstance(verdict, str) or verdict.strip().upper() not in HUMAN_VERDICTS:
            bad(line, f"verdict must be A, B or TIE, got {verdict!r}", record)
        elif item_id in answers:
            bad(line, f"second verdict for {item_id} (first on line {answers[item_id][0]}, which is used)", record)
        else:
            answers[item_id] = (line, verdict.strip().upper())

    human: dict[str, str] = {}
    for item_id, (_, verdict) in answers.items():
        a_side = items[item_id]["a_side"]
        human[item_id] = {"A": a_side, "B": "rejected" if a_side == "chosen" else "chosen", "TIE": "neither"}[verdict]
    reviewed = [items[i] for i in sorted(human)]
    cells: dict[tuple[str, str], int] = defaultdict(int)
    for item in reviewed:
        cells[(item["judge_side"], human[item["item_id"]])] += 1

    by_criterion = []
    for criterion in sorted({item["criterion"] for item in reviewed}):
        group = [item for item in reviewed if item["criterion"] == criterion]
        by_criterion.append({"criterion": criterion, **proportion(sum(item["judge_side"] == human[item["item_id"]] for item in group),
                                                                  len(group), "no reviewed items")})

    def ground_truth(side_of) -> dict[str, Any]:
        result = {}
        for kind in GROUND_TRUTHS:
            group = [item for item in reviewed if kind in item["ground_truth"]]
            result[kind] = proportion(sum(side_of(item) == "chosen" for item in group), len(group), f"no reviewed {kind} items")
        return result

    report = {
        "key": str(key_path), "verdicts": str(verdicts), "sample": key_data["sample"], "items": len(items),
        "answered": len(human), "unanswered": len(items) - len(human), "malformed": sorted(malformed, key=lambda m: m["line"]),
        "judge_vs_human": proportion(sum(item["judge_side"] == human[item["item_id"]] for item in reviewed), len(reviewed),
                                     "no reviewed items"),
        "judge_vs_human_by_criterion": by_criterion,
        "judge_vs_human_cohen_kappa": cohen_kappa(cells, REVIEW_SIDES),
        "human_neither_rate": proportion(sum(human[item["item_id"]] == "neither" for item in reviewed), len(reviewed), "no reviewed items"),
        "human_vs_ground_truth": ground_truth(lambda item: human[item["item_id"]]),
        "judge_vs_ground_truth": ground_truth(lambda item: item["judge_side"]),
        "definitions": {
            "side": "a verdict maps to the side shown as that letter (A/B per item in the key); TIE, and votes whose matches "
                    "equal their contradictions, are 'neither'",
            "judge_vs_human": "reviewed items whose judges' majority side equals the reviewer's side / reviewed items",
            "human_vs_ground_truth": "reviewed items of a ground-truth kind where the reviewer picked the chosen side / those items",
            "judge_vs_ground_truth": "the same items, the judges' majority side (for comparison on the reviewed sample)",
            "ci95": "Wilson score interval, 95 %",
        },
    }
    if out is not None:
        out = Path(out)
        if out.is_dir():
            out = out / IMPORT_REPORT
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2, ensure_ascii=False, allow_nan=False) + "\n", encoding="utf-8")
    return report
