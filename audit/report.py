"""`audit(run_dir, out)`: metrics.json, the figures and report.html, a static page that needs no server."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timezone
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any

import jinja2

from audit.metrics import DEFINITIONS, GROUND_TRUTHS, GROUPINGS, compute_metrics
from audit.plots import draw_figures

METRICS_FILE = "metrics.json"
REPORT_FILE = "report.html"
FIGURES_DIR = "figures"
MISSING = "—"

Cell = dict[str, str]


@cache
def template(name: str) -> jinja2.Template:
    """A page template of this package (autoescaped: code and reasons are shown as text)."""
    source = (files("audit") / "templates" / name).read_text(encoding="utf-8")
    return jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=True).from_string(source)


def _cell(text: Any, title: str = "", css: str = "", detail: str = "") -> Cell:
    return {"text": str(text), "title": title, "class": css, "detail": detail}


def _missing(reason: str | None) -> Cell:
    return _cell(MISSING, reason or "", "missing")


def _share(estimate: dict[str, Any]) -> Cell:
    """A proportion as 0.625 with its interval and counts in small print."""
    if estimate["value"] is None:
        return _missing(estimate["reason"])
    low, high = estimate["ci95"]
    return _cell(f"{estimate['value']:.3f}", f"{estimate['k']} of {estimate['n']}; Wilson 95 % interval {low:.3f} to {high:.3f}",
                 "number", f"[{low:.2f}, {high:.2f}] {estimate['k']}/{estimate['n']}")


def _mean(estimate: dict[str, Any]) -> Cell:
    if estimate["value"] is None:
        return _missing(estimate["reason"])
    return _cell(f"{estimate['value']:.3f}", f"over {estimate['n']}", "number")


def _kappa(estimate: dict[str, Any]) -> Cell:
    if estimate["value"] is None:
        return _missing(estimate["reason"])
    return _cell(f"{estimate['value']:.3f}", f"{estimate['subjects']} pairs; observed {estimate['observed']:.3f}, "
                 f"chance {estimate['expected']:.3f}", "number")


def _cohen(group: dict[str, Any]) -> Cell:
    judge_pairs = group["cohen_kappa"]["judge_pairs"]
    if not judge_pairs:
        return _missing(group["cohen_kappa"]["reason"])
    if len(judge_pairs) == 1:
        return _kappa(judge_pairs[0])
    texts = [f"{'/'.join(p['judges'])}: {p['value']:.2f}" if p["value"] is not None else f"{'/'.join(p['judges'])}: {MISSING}"
             for p in judge_pairs]
    return _cell("; ".join(texts), "; ".join(p["reason"] or "" for p in judge_pairs), "number")


def _share_of_votes(group: dict[str, Any], outcome: str) -> Cell:
    value = group["vote_shares"][outcome]
    if value is None:
        return _missing("no votes")
    return _cell(f"{value:.3f}", f"{group['vote_counts'][outcome]} of {group['votes']} votes", "number")


def _signed(value: float | None, reason: str) -> Cell:
    return _missing(reason) if value is None else _cell(f"{value:+.3f}", "", "number")


AGREEMENT_COLUMNS: list[tuple[str, Callable[[dict[str, Any]], Cell]]] = [
    ("pairs", lambda g: _cell(g["pairs"], "", "number")),
    ("votes", lambda g: _cell(g["votes"], "", "number")),
    ("match", lambda g: _share_of_votes(g, "match")),
    ("contradiction", lambda g: _share_of_votes(g, "contradiction")),
    ("tie", lambda g: _share_of_votes(g, "tie")),
    ("parse error", lambda g: _share(g["parse_error_rate"])),
    ("unanimity", lambda g: _share(g["unanimity_rate"])),
    ("mean margin", lambda g: _mean(g["mean_margin"])),
    ("vote entropy (bits)", lambda g: _mean(g["vote_entropy"])),
    ("Fleiss κ", lambda g: _kappa(g["fleiss_kappa"])),
]
BIAS_COLUMNS: list[tuple[str, Callable[[dict[str, Any]], Cell]]] = [
    ("A share", lambda g: _share(g["position"]["a_share"])),
    ("flip rate", lambda g: _share(g["position"]["flip_rate"])),
    ("longer wins", lambda g: _share(g["length"]["longer_wins"])),
    ("longer is chosen", lambda g: _share(g["length"]["longer_is_chosen"])),
    ("length bias", lambda g: _signed(g["length"]["length_bias"], g["length"]["longer_wins"]["reason"] or "")),
    ("verified agree", lambda g: _share(g["ground_truth"]["verified"])),
    ("commit agree", lambda g: _share(g["ground_truth"]["commit"])),
]
PAIR_COLUMNS = [
    ("keep yield", lambda g: _share(g["keep_yield"])),
    ("Cohen κ", _cohen),
]


def _table(table_id: str, title: str, keys: tuple[str, ...], groups: list[dict[str, Any]],
           columns: list[tuple[str, Callable[[dict[str, Any]], Cell]]]) -> dict[str, Any]:
    return {
        "id": table_id, "title": title, "headers": [*keys, *(name for name, _ in columns)],
        "rows": [[*(_cell(g[k], "", "key") for k in keys), *(render(g) for _, render in columns)] for g in groups],
        "note": None,
    }


def _tables(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    titles = {"overall": "Overall", "by_criterion": "By criterion", "by_language": "By language", "by_source": "By source",
              "by_criterion_language_source": "By criterion × language × source"}
    tables = []
    for name, keys in GROUPINGS.items():
        groups = [metrics[name]] if not keys else metrics[name]
        tables.append(_table(f"{name}-agreement", f"{titles[name]}: votes and agreement", keys, groups,
                             AGREEMENT_COLUMNS + PAIR_COLUMNS))
        tables.append(_table(f"{name}-bias", f"{titles[name]}: position, length and ground truth", keys, groups, BIAS_COLUMNS))
    return tables


def _judge_tables(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    judges = metrics["by_judge"]
    tables = [_table("judges-agreement", "Per judge (each judge's own votes): votes and agreement", ("judge",), judges, AGREEMENT_COLUMNS),
              _table("judges-bias", "Per judge: position, length and ground truth", ("judge",), judges, BIAS_COLUMNS)]
    cohen = metrics["overall"]["cohen_kappa"]
    rows = [[_cell(" / ".join(p["judges"]), "", "key"), _kappa(p), _cell(p["subjects"], "", "number")] for p in cohen["judge_pairs"]]
    tables.append({"id": "cohen", "title": "Cohen's κ between judges", "headers": ["judges", "Cohen κ", "pairs rated by both"],
                   "rows": rows, "note": cohen["reason"]})
    return tables


def _ground_truth_table(metrics: dict[str, Any]) -> dict[str, Any]:
    rows = []
    for kind, meaning in GROUND_TRUTHS.items():
        estimate = metrics["overall"]["ground_truth"][kind]
        rows.append([_cell(kind, meaning, "key"), _cell(estimate["n"], "", "number"), _cell(estimate["k"], "", "number"),
                     _cell(estimate["picks_rejected"], "", "number"), _share(estimate)])
    return {"id": "ground-truth", "title": "Agreement with ground truth",
            "headers": ["kind", "pairs", "votes pick chosen", "votes pick rejected", "agreement [95 % CI]"], "rows": rows,
            "note": "; ".join(f"{kind}: {meaning}" for kind, meaning in GROUND_TRUTHS.items())}


def _reason_tables(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"id": "keep-reasons", "title": "Keep decisions", "headers": ["reason", "pairs"],
         "rows": [[_cell(r["reason"], "", "key"), _cell(r["pairs"], "", "number")] for r in metrics["keep_reasons"]],
         "note": None},
        {"id": "error-reasons", "title": "Why votes did not parse (top 10)", "headers": ["reason", "votes"],
         "rows": [[_cell(r["reason"], "", "key"), _cell(r["votes"], "", "number")] for r in metrics["error_reasons"]],
         "note": None if metrics["error_reasons"] else "every vote parsed"},
    ]


def _count_share(count: int, share: float | None, of: str) -> Cell:
    """A count with its share in small print (a census: no interval)."""
    if share is None:
        return _cell(count, "", "number")
    return _cell(count, f"{share:.3f} of {of}", "number", f"{share:.1%}")


def _source_tables(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    label, corpus = metrics["label_sources"], metrics["corpus_label_sources"]
    label_rows = [[_cell(r["label_source"], "", "key"), _count_share(r["pairs"], r["share"], "all pairs"),
                   _count_share(r["kept"], r["kept_share"], "kept pairs"), _cell(r["judge_voted"], "", "number")]
                  for r in label["sources"]]
    corpus_rows = [[_cell(r["label_source"], "", "key"), _count_share(r["rows"], r["share"], "corpus rows")] for r in corpus["sources"]]
    return [
        {"id": "label-sources", "title": f"Label output: {label['pairs']} pairs, {label['kept']} kept, by label source",
         "headers": ["label source", "pairs", "kept", "with judge votes"], "rows": label_rows,
         "note": "execution: the pair's tests decided the label; judges: the judges' votes did. Judge metrics count only pairs "
                 "with judge votes."},
        {"id": "corpus-label-sources",
         "title": "Corpus (assemble output) by label source" + (f": {corpus['rows']} rows" if corpus["rows"] is not None else ""),
         "headers": ["label source", "rows"], "rows": corpus_rows, "note": corpus["reason"]},
    ]


def refused_sentences(qualification: dict[str, Any]) -> list[str]:
    """One plain sentence per judge the label stage refused."""
    return [f"{q['judge']} was NOT qualified to label: {'; '.join(q['shortfalls']) or 'below the thresholds'}; pairs that "
            "needed a judge were not labelled by it" for q in qualification.get("judges", []) if not q["qualified"]]


def _qualification(metrics: dict[str, Any]) -> dict[str, Any]:
    """The qualification section: a status sentence, the per-judge table, refusals and the manifest's notes."""
    report = metrics["qualification"]
    status = report.get("status")
    table = None
    if status == "measured":
        limits = report["thresholds"]
        benchmark = f" and the benchmark file {limits['benchmark']}" if limits.get("benchmark") else ""
        text = (f"Each judge voted on {report['calibration_pairs']} calibration pairs (up to {limits['pairs']} of the run's "
                f"execution-verified pairs{benchmark}) before it labelled. To qualify: at least {limits['min_pairs']} pairs, "
                f"agreement with the truth at least {limits['min_agreement']:.2f}, position consistency at least "
                f"{limits['min_consistency']:.2f}; a judge short of them: on_unqualified {limits['on_unqualified']}.")
        rows = [[_cell(q["judge"], "", "key"), _cell(q["pairs"], "", "number"), _share(q["agreement"]), _share(q["consistency"]),
                 _share(q["tie_rate"]), _share(q["error_rate"]), _cell(f"{q['weight']:.3f}", "log-odds weight", "number"),
                 _cell("yes" if q["qualified"] else "no", "", "key" if q["qualified"] else "key refused"),
                 _cell("; ".join(q["shortfalls"]) or MISSING, "", "key")] for q in report["judges"]]
        table = {"id": "qualification", "title": "Qualification per judge (calibration pairs, both orders)",
                 "headers": ["judge", "pairs", "agreement with truth", "position consistency", "tie rate", "parse-error rate",
                             "weight", "qualified", "shortfalls"], "rows": rows, "note": None}
    elif status == "off":
        text = "Judges labelled without qualification (label.qualify is null): nothing measured them before they labelled."
    elif status == "skipped":
        text = f"Qualification was skipped: {report.get('why')}."
    else:
        text = f"No qualification recorded: {report.get('why')}."
    return {"status": status, "text": text, "table": table, "refused": refused_sentences(report), "notes": metrics["label_notes"]}


def _calibration_table(metrics: dict[str, Any]) -> dict[str, Any]:
    calibration = metrics["calibration"]
    rows = []
    for judge in calibration["by_judge"]:
        rows.append([_cell(judge["judge"], "", "key"), _cell("all", "", "key"), _cell(judge["pairs"], "", "number"),
                     _cell(sum(b["picks_chosen"] for b in judge["buckets"]), "", "number"),
                     _cell(sum(b["picks_rejected"] for b in judge["buckets"]), "", "number"), _share(judge["agreement"])])
        for bucket in judge["buckets"]:
            rows.append([_cell(judge["judge"], "", "key"), _cell(f"{bucket['strength']:.3f}", "", "number"),
                         _cell(bucket["pairs"], "", "number"), _cell(bucket["picks_chosen"], "", "number"),
                         _cell(bucket["picks_rejected"], "", "number"), _share(bucket["agreement"])])
    table = calibration["calibration_table"]
    sources = "; ".join(f"{j['judge']}: {j['from_calibration']} calibration, {j['from_label']} label-output pairs"
                        for j in calibration["by_judge"])
    note = (f"Pairs of known truth: {table['pairs']} in the calibration table, {calibration['verified_label_pairs']} "
            f"execution-verified pairs of the label output with judge votes" + (f" ({sources})" if sources else "") + ". "
            + (table["reason"] + ". " if table["reason"] else "") + (calibration["reason"] + "." if calibration["reason"] else ""))
    return {"id": "calibration", "title": "Agreement with truth by vote-margin strength",
            "headers": ["judge", "strength", "pairs", "pick chosen", "pick rejected", "agreement [95 % CI]"],
            "rows": rows, "note": note.strip()}


def write_report(metrics: dict[str, Any], out: Path) -> Path:
    """report.html (and its figures) in `out` from a metrics dict."""
    figures = draw_figures(metrics, out / FIGURES_DIR)
    page = template("report.html.j2").render(
        metrics=metrics,
        generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        summary=_ground_truth_table(metrics),
        judge_tables=_judge_tables(metrics),
        tables=_tables(metrics),
        reason_tables=_reason_tables(metrics),
        source_tables=_source_tables(metrics),
        qualification=_qualification(metrics),
        refused=refused_sentences(metrics["qualification"]),
        calibration=_calibration_table(metrics),
        figures=[{"src": f"{FIGURES_DIR}/{name}", "title": title, "caption": caption} for name, (title, caption) in figures.items()],
        definitions=DEFINITIONS,
    )
    path = out / REPORT_FILE
    path.write_text(page, encoding="utf-8")
    return path


def audit(run_dir: str | Path, out: str | Path) -> dict[str, Any]:
    """Audit a run's labels: writes OUT/metrics.json, OUT/figures/*.png and OUT/report.html; returns the metrics."""
    from storage.staging import written_locally

    metrics = compute_metrics(run_dir)
    with written_locally(str(out)) as local:  # an object store's files are written here, then copied up
        (local / METRICS_FILE).write_text(json.dumps(metrics, indent=2, allow_nan=False) + "\n", encoding="utf-8")
        write_report(metrics, local)
    return metrics
