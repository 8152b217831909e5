"""The dataset card written beside the corpus shards: how the corpus was made, from the run itself.

Funnel by stage and drop reason (the stage manifests), composition by source x criterion x
language, who labelled the rows (execution or judges, and the judges' qualification from the label
manifest) and the decontamination summary (DuckDB over the written Parquet), and the config used.
Every file is read and written through Beam's FileSystems, so the run directory may be an object
store (gs://, s3://): DuckDB queries Arrow tables read from the shards, never a path.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import yaml
from apache_beam.io.filesystems import FileSystems

from schemas import ASPECTS, LANGUAGES
from storage import StageManifest, class_labels, list_parts, read_table

CARD = "README.md"
FUNNEL_ORDER = ("mine", "synthesize", "external", "parse", "dedup", "label", "assemble")


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _funnel(run_dir: str, manifest: StageManifest) -> str:
    manifests = {}
    for name in FUNNEL_ORDER:
        found = StageManifest.read(FileSystems.join(run_dir, name))
        if found is not None:
            manifests[name] = found
    manifests[manifest.stage] = manifest  # this stage's own, not yet written
    rows = []
    for name, m in manifests.items():
        drops = ", ".join(f"{reason} {count:,}" for reason, count in sorted(m.dropped.items(), key=lambda kv: -kv[1])) or "none"
        rows.append([name, f"{m.records_in:,}", f"{m.records_out:,}", drops])
    return _table(["stage", "in", "out", "dropped (reason count)"], rows)


def corpus_vocabulary(stage_dir: str, manifest: StageManifest | None = None) -> list[str]:
    """The corpus `language` names: those the shards record (their `huggingface` metadata), else the manifest's
    `report["languages"]`, else the published nine."""
    shards = list_parts(stage_dir)
    names = class_labels(shards[0], "language") if shards else None
    if names is None and manifest is not None:
        names = manifest.report.get("languages")
    return list(names or LANGUAGES.names)


def _vocabulary(names: list[str]) -> str:
    published = len(LANGUAGES.names)
    added = names[published:]
    intro = ("The `language` ClassLabel names, index -> name: the nine published Themis-CodePreference names in their "
             "published order" + (f", then the run's other registered languages ({', '.join(added)}) in registry order."
                                  if added else " only."))
    rows = [[index, name, "published" if index < published else "run registry"] for index, name in enumerate(names)]
    return intro + "\n\n" + _table(["index", "language", "from"], rows)


def _composition(stage_dir: str, languages: list[str]) -> tuple[str, int]:
    import duckdb

    shards = list_parts(stage_dir)
    if not shards:
        return "(no rows)", 0
    corpus = read_table(shards, ["source", "aspect", "language"])
    with duckdb.connect() as db:
        db.register("corpus", corpus)
        counts = db.execute("SELECT source, aspect, language, count(*) FROM corpus GROUP BY ALL ORDER BY ALL").fetchall()
    total = sum(row[3] for row in counts)
    rows = [[source, ASPECTS.names[aspect], languages[language], f"{n:,}"] for source, aspect, language, n in counts]
    return _table(["source", "criterion", "language", "pairs"], rows) if rows else "(no rows)", total


def _label_sources(stage_dir: str) -> str:
    """Who decided the rows' labels: execution (the pair's tests), the judges, or nobody (pairs of unjudged stages)."""
    shards = list_parts(stage_dir)
    if not shards:
        return "(no rows)"
    sources = read_table(shards, ["label_source"]).column("label_source").to_pylist()
    counts: dict[str, int] = {}
    for source in sources:
        name = {"execution": "execution (the pair's tests: the chosen side passed, the rejected failed)",
                "judges": "LLM judges (votes in both orders)"}.get(source or "", "none (a stage that is not judged)")
        counts[name] = counts.get(name, 0) + 1
    rows = [[name, f"{n:,}", f"{n / len(sources):.1%}"] for name, n in sorted(counts.items(), key=lambda kv: -kv[1])]
    return _table(["label from", "rows", "share"], rows)


def _qualification(run_dir: str) -> str:
    """The judges' qualification as the label stage recorded it, in plain words first."""
    label = StageManifest.read(FileSystems.join(run_dir, "label"))
    if label is None:
        return "The corpus was not labelled by the label stage of this run."
    report = label.report.get("qualification") or {"status": "off"}
    if report["status"] == "off":
        return "The judges were not measured before labelling (`label.qualify` was off)."
    if report["status"] == "skipped":
        return f"No judge was needed: {report.get('why', '')}."
    lines = []
    for judge in report["judges"]:
        if not judge["qualified"]:
            lines.append(f"**Judge `{judge['judge']}` was NOT qualified to label** ({'; '.join(judge['shortfalls'])}): "
                         "no pair of this corpus was labelled by it.")
    thresholds = report["thresholds"]
    lines.append(f"Each judge voted in both orders on {report['calibration_pairs']:,} calibration pairs whose better side "
                 f"execution (or a benchmark) decided; thresholds: agreement >= {thresholds['min_agreement']:.2f}, position "
                 f"consistency >= {thresholds['min_consistency']:.2f}, at least {thresholds['min_pairs']} pairs.")

    def figure(estimate: dict[str, Any]) -> str:
        if estimate["value"] is None:
            return "n/a"
        return f"{estimate['value']:.2f} [{estimate['ci95'][0]:.2f}, {estimate['ci95'][1]:.2f}]"

    rows = [[j["judge"], j["pairs"], figure(j["agreement"]), figure(j["consistency"]), figure(j["tie_rate"]),
             figure(j["error_rate"]), "yes" if j["qualified"] else "no"] for j in report["judges"]]
    lines.append(_table(["judge", "pairs", "agreement (95 % CI)", "consistency", "ties", "parse errors", "qualified"], rows))
    return "\n\n".join(lines)


def _decontamination(stage_dir: str) -> str:
    files = list_parts(FileSystems.join(stage_dir, "decontamination"))
    if not files:
        return "No benchmark files were configured: the corpus was not decontaminated."
    import duckdb

    report = read_table(files, ["benchmark", "prompts_checked", "pairs_removed", "examples"])
    with duckdb.connect() as db:
        db.register("report", report)
        rows = db.execute("SELECT benchmark, prompts_checked, pairs_removed, examples FROM report ORDER BY benchmark").fetchall()
    return _table(["benchmark", "prompts checked", "pairs removed", "examples"],
                  [[b, f"{p:,}", f"{r:,}", "; ".join(e)[:300] or "-"] for b, p, r, e in rows])


def _held_out(manifest: StageManifest) -> list[str]:
    count = manifest.counters.get("held_out", 0)
    if not count:
        return []
    return [f"## Held-out pairs\n\n{count:,} pairs are held out of the corpus, after the final dedup, in `holdout/` in the "
            "Themis-CodeRewardBench layout (`prompt`, `chosen`, `rejected`, `language`, `aspect`, `subset`, `id`): the "
            "`eval` stage scores the trained reward model on them."]


def write_card(run_dir: str, stage_dir: str, manifest: StageManifest) -> str:
    """Write README.md into `stage_dir` (through FileSystems); returns its name."""
    languages = corpus_vocabulary(stage_dir, manifest)
    composition, total = _composition(stage_dir, languages)
    front = {
        "configs": [{"config_name": "default", "data_files": [{"split": "train", "path": "part-*.parquet"}]}],
        "language": ["en", "code"],
        "tags": ["code", "preference", "reward-modeling"],
        "pretty_name": "codepref corpus",
    }
    sections = [
        "---\n" + yaml.safe_dump(front, sort_keys=False).strip() + "\n---",
        "# codepref corpus",
        f"Code preference pairs in the Themis-CodePreference layout: {total:,} rows, columns `system`, `input`, "
        "`chosen`, `rejected`, `language` and `aspect` (ClassLabel), `source`, `idx`, then provenance (`origin`, "
        "`license`, `prompt_origin`, `verified`, vote totals, `label_source`). Generated by codepref on "
        f"{datetime.now(timezone.utc).strftime('%Y-%m-%d')} (stage config hash `{manifest.config_hash}`).",
        "## Funnel\n\n" + _funnel(run_dir, manifest),
        "## Composition\n\n" + composition,
        "## Vocabulary\n\n" + _vocabulary(languages),
        "## Labels\n\n" + _label_sources(stage_dir) + "\n\n" + _qualification(run_dir),
        *_held_out(manifest),
        "## Decontamination\n\n" + _decontamination(stage_dir),
        "## Config\n\n```yaml\n" + yaml.safe_dump({"assemble": manifest.config, "inputs": manifest.inputs}, sort_keys=False) + "```",
        "## Licences\n\nEach row keeps the licence of the repository it came from in `license` (null where the source "
        "did not say); respect them when you redistribute.",
    ]
    with FileSystems.create(FileSystems.join(stage_dir, CARD)) as handle:
        handle.write(("\n\n".join(sections) + "\n").encode("utf-8"))
    return CARD
