"""A leaderboard of result dirs (ours and published Themis ones alike): one Markdown and one HTML page.

`write_leaderboard(result_dirs, out_dir)` reads each dir's results.json and writes leaderboard.md and
leaderboard.html: four tables (overall, by aspect, by language, by subset), models as rows, each cell the
accuracy with its Wilson 95 % interval. The interval is computed from the correct count and the group size
(`correct_predictions` / `total_examples` overall, `correct` / `count` in a group); published results.json
files have no correct count in their groups, so there it is estimated from round(accuracy × count), and the
cell is marked † with a footnote.

Columns: the union of the groups of every model. Aspects and languages are named by their canonical spelling
(schemas.ASPECTS / schemas.LANGUAGES: `Cpp` and `C++` are one column, `C++`), names the vocabulary does not
know and subsets as spelled; columns are in alphabetical order. A model without a group has an empty cell.
Rows: by overall accuracy, highest first (ties by name). A model is named by results.json's `run.model`,
else by its folder's name; two dirs with the same model name get the folder name appended.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any

import jinja2

from audit.agreement import wilson_interval
from pipelines.eval.metrics import RESULTS_FILE
from schemas import ASPECTS, LANGUAGES
from schemas.vocab import Vocabulary

MARKDOWN_FILE = "leaderboard.md"
HTML_FILE = "leaderboard.html"
TEMPLATE = "leaderboard.html.j2"
ESTIMATED = "†"  # marks a cell whose interval comes from round(accuracy × count)
MISSING = "—"
TABLES: dict[str, tuple[str, Vocabulary | None]] = {
    "by_aspect": ("By aspect", ASPECTS),
    "by_language": ("By language", LANGUAGES),
    "by_subset": ("By subset", None),
}
FOOTNOTE = (f"{ESTIMATED} The results.json gives no count of correct pairs here: the interval is computed from "
            "round(accuracy × count) correct pairs.")


class LeaderboardError(ValueError):
    """A result dir cannot be put on the leaderboard; the message names the file."""


@dataclass(frozen=True)
class Group:
    """One accuracy: `correct` of `count`; `estimated` when `correct` is round(accuracy × count)."""

    accuracy: float
    count: int
    correct: int
    estimated: bool

    def cell(self) -> dict[str, Any]:
        low, high = wilson_interval(self.correct, self.count)  # type: ignore[misc] (count > 0)
        return {"accuracy": self.accuracy, "low": low, "high": high, "count": self.count, "correct": self.correct,
                "estimated": self.estimated}


@dataclass
class Entry:
    """One result dir: its model's name and accuracies (groups keyed by column name)."""

    model: str
    source: Path
    overall: Group
    groups: dict[str, dict[str, Group]] = field(default_factory=dict)
    parse_failure_rate: float | None = None


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _group(figures: Any, count_key: str, correct_key: str, where: str) -> Group:
    if not isinstance(figures, dict) or not _number(figures.get("accuracy")):
        raise LeaderboardError(f"{where}: no accuracy")
    accuracy, count = float(figures["accuracy"]), figures.get(count_key)
    if not _number(count) or count != int(count) or count <= 0:
        raise LeaderboardError(f"{where}: {count_key!r} must be a positive whole number (it is {count!r})")
    count = int(count)
    correct = figures.get(correct_key)
    if correct is None:
        return Group(accuracy, count, round(accuracy * count), True)
    if not _number(correct) or correct != int(correct) or not 0 <= correct <= count:
        raise LeaderboardError(f"{where}: {correct_key!r} must be a whole number from 0 to {count} (it is {correct!r})")
    return Group(accuracy, count, int(correct), False)


def _merge(groups: list[Group]) -> Group:
    """Two spellings of one label in one file (`Cpp` and `C++`): one group of their pairs."""
    if len(groups) == 1:
        return groups[0]
    count, correct = sum(g.count for g in groups), sum(g.correct for g in groups)
    return Group(correct / count, count, correct, any(g.estimated for g in groups))


def column_name(name: str, vocabulary: Vocabulary | None) -> str:
    """The column of a group: the vocabulary's canonical spelling where it knows the name, else the name as spelled."""
    return vocabulary.canonical(name) if vocabulary is not None and name in vocabulary else name


def read_result(result_dir: str | Path) -> Entry:
    """The leaderboard entry of one result dir (its results.json)."""
    folder = Path(result_dir)
    path = folder / RESULTS_FILE
    if not path.is_file():
        raise LeaderboardError(f"{path}: no such file ({'no such folder' if not folder.is_dir() else 'the folder has no results'})")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise LeaderboardError(f"{path}: cannot be read as JSON ({error})") from error
    if not isinstance(data, dict) or not isinstance(data.get("overall"), dict) or not _number(data["overall"].get("accuracy")):
        raise LeaderboardError(f"{path}: no overall.accuracy (not a results.json of codepref eval or Themis)")
    overall_figures = data["overall"]
    overall = _group(overall_figures, "total_examples", "correct_predictions", f"{path}: overall")
    run = data.get("run")
    model = run.get("model") if isinstance(run, dict) else None
    rate = overall_figures.get("parse_failure_rate")
    entry = Entry(model=str(model) if model else folder.resolve().name, source=folder, overall=overall,
                  parse_failure_rate=float(rate) if _number(rate) else None)
    for name, (_, vocabulary) in TABLES.items():
        figures = data.get(name) or {}
        if not isinstance(figures, dict):
            raise LeaderboardError(f"{path}: {name} is not an object of groups")
        spellings: dict[str, list[Group]] = {}
        for key, group in figures.items():
            spellings.setdefault(column_name(str(key), vocabulary), []).append(
                _group(group, "count", "correct", f"{path}: {name}.{key}"))
        entry.groups[name] = {column: _merge(groups) for column, groups in spellings.items()}
    return entry


def _distinct_names(entries: list[Entry]) -> list[str]:
    """Model names, with the folder name appended where two entries share one (the path where that is not enough)."""
    names = [e.model for e in entries]
    for attempt in (lambda e: f"{e.model} ({e.source.resolve().name})", lambda e: f"{e.model} ({e.source})"):
        names = [attempt(e) if names.count(n) > 1 else n for e, n in zip(entries, names)]
    return names


def leaderboard(result_dirs: list[str | Path] | tuple[str | Path, ...]) -> dict[str, Any]:
    """The four tables of a set of result dirs.

    {"tables": {"overall" | "by_aspect" | "by_language" | "by_subset": {"title", "columns": [group names],
    "rows": [{"model", "source", "cells": [{accuracy, low, high, count, correct, estimated} or None per column]}]}}};
    overall rows also have `parse_failure_rate` (None for a model whose answers cannot fail to parse).
    """
    if not result_dirs:
        raise LeaderboardError("no result dirs: give at least one folder with a results.json")
    entries = [read_result(d) for d in result_dirs]
    names = _distinct_names(entries)
    order = sorted(range(len(entries)), key=lambda i: (-entries[i].overall.accuracy, names[i].casefold(), names[i]))
    tables: dict[str, Any] = {"overall": {
        "title": "Overall", "columns": ["overall"],
        "rows": [{"model": names[i], "source": str(entries[i].source), "cells": [entries[i].overall.cell()],
                  "parse_failure_rate": entries[i].parse_failure_rate} for i in order],
    }}
    for name, (title, _) in TABLES.items():
        columns = sorted({c for e in entries for c in e.groups[name]}, key=lambda c: (c.casefold(), c))
        rows = []
        for i in order:
            groups = entries[i].groups[name]
            rows.append({"model": names[i], "source": str(entries[i].source),
                         "cells": [groups[c].cell() if c in groups else None for c in columns]})
        tables[name] = {"title": title, "columns": columns, "rows": rows}
    return {"tables": tables}


# Rendering: the Markdown and the HTML show the same texts (the browser test compares them).

def cell_text(cell: dict[str, Any] | None, with_count: bool = False) -> str:
    """`0.734 [0.70, 0.76]` (with `n=…` where a column's counts differ, † where the interval is estimated); — if empty."""
    if cell is None:
        return MISSING
    text = f"{cell['accuracy']:.3f} [{cell['low']:.2f}, {cell['high']:.2f}]"
    if with_count:
        text += f" n={cell['count']}"
    return text + (ESTIMATED if cell["estimated"] else "")


def _view(name: str, table: dict[str, Any]) -> dict[str, Any]:
    """Headers and cell texts of one table: the header holds n where every model has the same count for the column,
    else the range, and each cell its own n."""
    headers, varies = ["model"], []
    for index, column in enumerate(table["columns"]):
        counts = sorted({row["cells"][index]["count"] for row in table["rows"] if row["cells"][index] is not None})
        varies.append(len(counts) > 1)
        headers.append(f"{column} (n={counts[0]})" if len(counts) == 1 else f"{column} (n={counts[0]}–{counts[-1]})")
    overall = name == "overall"
    if overall:
        headers.append("parse failures")
    rows = []
    for row in table["rows"]:
        cells = [{"text": cell_text(cell, varies[i]), "column": table["columns"][i], "cell": cell}
                 for i, cell in enumerate(row["cells"])]
        if overall:
            rate = row["parse_failure_rate"]
            cells.append({"text": MISSING if rate is None else f"{rate:.3f}", "column": "parse failures", "cell": None})
        rows.append({"model": row["model"], "source": row["source"], "cells": cells})
    estimated = any(c is not None and c["estimated"] for row in table["rows"] for c in row["cells"])
    notes = [FOOTNOTE] if estimated else []
    if overall and any(row["parse_failure_rate"] is not None for row in table["rows"]):
        notes.append("parse failures: the share of pairs whose answer (a generative judge's) did not parse; they count as "
                     f"incorrect in the accuracy. {MISSING}: the results record none (a reward model's scores always parse).")
    return {"id": name, "title": table["title"], "headers": headers, "rows": rows, "notes": notes}


def views(board: dict[str, Any]) -> list[dict[str, Any]]:
    return [_view(name, table) for name, table in board["tables"].items()]


def _markdown_text(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def render_markdown(board: dict[str, Any]) -> str:
    lines = ["# Leaderboard", "",
             ("Preference accuracy with its Wilson 95 % interval; models by overall accuracy, highest first. "
              f"{MISSING}: the model's results have no such group."), ""]
    for view in views(board):
        lines += [f"## {view['title']}", ""]
        lines.append("| " + " | ".join(_markdown_text(h) for h in view["headers"]) + " |")
        lines.append("|" + "---|" + "---:|" * (len(view["headers"]) - 1))
        for row in view["rows"]:
            lines.append("| " + " | ".join(_markdown_text(t) for t in [row["model"], *(c["text"] for c in row["cells"])]) + " |")
        lines.append("")
        for note in view["notes"]:
            lines += [note, ""]
    rows = board["tables"]["overall"]["rows"]
    lines += ["## Results", ""] + [f"- {_markdown_text(row['model'])}: `{row['source']}`" for row in rows] + [""]
    return "\n".join(lines)


@cache
def template() -> jinja2.Template:
    source = (files("pipelines.eval") / "templates" / TEMPLATE).read_text(encoding="utf-8")
    return jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=True).from_string(source)


def render_html(board: dict[str, Any]) -> str:
    rows = board["tables"]["overall"]["rows"]
    return template().render(tables=views(board), sources=[{"model": r["model"], "source": r["source"]} for r in rows],
                             generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), missing=MISSING)


def write_leaderboard(result_dirs: list[str | Path] | tuple[str | Path, ...], out_dir: str | Path) -> tuple[Path, Path]:
    """leaderboard.md and leaderboard.html in `out_dir` (created) from the results.json of each result dir."""
    board = leaderboard(result_dirs)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    markdown, html = out / MARKDOWN_FILE, out / HTML_FILE
    markdown.write_text(render_markdown(board), encoding="utf-8")
    html.write_text(render_html(board), encoding="utf-8")
    return markdown, html
