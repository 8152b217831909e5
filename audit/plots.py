"""The report's figures, drawn with matplotlib (Agg, no display) from the metrics dict into PNG files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

FIGURES = {  # file name: (title drawn in the image, caption under it)
    "margin_histogram.png": ("Vote margin of every pair, kept and not kept",
                             "Pairs per margin value; kept pairs stacked on those the keep rule dropped."),
    "bias_by_criterion.png": ("Position and length bias by criterion",
                              "Left: share of A among A/B verdicts (0.5, dashed, is no position bias) and the flip rate "
                              "between the two orders. Right: how often the longer side wins against how often it is the "
                              "chosen side. Whiskers: Wilson 95 % intervals; n/a: no pairs to count."),
    "kappa_by_language.png": ("Fleiss' kappa by language",
                              "Agreement beyond chance of the votes on each pair (pooled judges); n/a where kappa is "
                              "undefined (see metrics.json for the reason)."),
    "calibration_by_strength.png": ("Agreement with truth by vote-margin strength, per judge",
                                    ("On pairs of known truth (calibration pairs and execution-verified pairs): share of "
                                    "(pair, judge) whose votes pick the chosen side, by |matches - contradictions| / votes of "
                                    "that judge on the pair. Whiskers: Wilson 95 % intervals; n: pairs in the bucket.")),
}
_DPI = 100


def _figure(width: float, height: float):  # -> matplotlib.figure.Figure
    from matplotlib.figure import (
        Figure,  # no pyplot: no global state, no display backend
    )

    return Figure(figsize=(width, height), dpi=_DPI, layout="constrained")


def _no_data(axes, text: str) -> None:
    axes.text(0.5, 0.5, text, ha="center", va="center", transform=axes.transAxes, color="#666666")
    axes.set_xticks([])
    axes.set_yticks([])


def _value(estimate: dict[str, Any] | None) -> float | None:
    return None if estimate is None else estimate.get("value")


def margin_histogram(metrics: dict[str, Any], path: Path) -> None:
    """Stacked bars of pairs per margin value (bins of width 1/8 centred on multiples of 1/8)."""
    import numpy as np
    from matplotlib.ticker import MaxNLocator

    figure = _figure(7.5, 3.4)
    axes = figure.add_subplot()
    rows = metrics["margins"]
    if not rows:
        _no_data(axes, "no pairs")
    else:
        edges = np.arange(-1 - 1 / 16, 1 + 1 / 8, 1 / 8)
        margins = [row["margin"] for row in rows]
        kept, _ = np.histogram(margins, bins=edges, weights=[row["kept"] for row in rows])
        not_kept, _ = np.histogram(margins, bins=edges, weights=[row["not_kept"] for row in rows])
        centres = (edges[:-1] + edges[1:]) / 2
        axes.bar(centres, not_kept, width=1 / 8 * 0.9, color="#c8c8c8", label="not kept")
        axes.bar(centres, kept, width=1 / 8 * 0.9, bottom=not_kept, color="#2f6db5", label="kept")
        axes.set_xlim(-1.1, 1.1)
        axes.set_xlabel("margin = (matches - contradictions) / votes")
        axes.set_ylabel("pairs")
        axes.yaxis.set_major_locator(MaxNLocator(integer=True))
        axes.legend(loc="upper left", frameon=False)
    axes.set_title(FIGURES["margin_histogram.png"][0])
    figure.savefig(path)


def bias_by_criterion(metrics: dict[str, Any], path: Path) -> None:
    """Left: A share (with Wilson 95 % interval) and flip rate; right: longer side wins against longer is chosen."""
    import numpy as np

    groups = metrics["by_criterion"]
    figure = _figure(10, 3.8)
    position, length = figure.subplots(1, 2)
    if not groups:
        _no_data(position, "no pairs")
        _no_data(length, "no pairs")
    else:
        names = [g["criterion"] for g in groups]
        x = np.arange(len(names))
        width = 0.38

        def bars(axes, offset, estimates, color, label):
            values = [_value(e) for e in estimates]
            heights = [v if v is not None else 0.0 for v in values]
            lower = [v - e["ci95"][0] if v is not None else 0.0 for v, e in zip(values, estimates)]
            upper = [e["ci95"][1] - v if v is not None else 0.0 for v, e in zip(values, estimates)]
            axes.bar(x + offset, heights, width, color=color, label=label, yerr=[lower, upper], capsize=3, ecolor="#555555")
            for xi, v in zip(x + offset, values):
                if v is None:
                    axes.text(xi, 0.02, "n/a", ha="center", va="bottom", fontsize=8, color="#666666", rotation=90)
                else:
                    axes.text(xi + width * 0.1, v + 0.01, f"{v:.2f}", ha="left", va="bottom", fontsize=7, color="#333333")

        bars(position, -width / 2, [g["position"]["a_share"] for g in groups], "#2f6db5", "A share of A/B verdicts")
        bars(position, width / 2, [g["position"]["flip_rate"] for g in groups], "#e0882b", "flip rate between orders")
        position.axhline(0.5, color="#333333", linewidth=0.8, linestyle="--")
        position.set_title("Position")
        bars(length, -width / 2, [g["length"]["longer_wins"] for g in groups], "#2f6db5", "longer side wins")
        bars(length, width / 2, [g["length"]["longer_is_chosen"] for g in groups], "#9bbf5a", "longer side is chosen")
        length.set_title("Length")
        for axes in (position, length):
            axes.set_ylim(0, 1.3)
            axes.set_yticks([0, 0.25, 0.5, 0.75, 1.0])
            axes.set_xticks(x, [_short(n) for n in names], rotation=20, ha="right", fontsize=8)
            axes.legend(loc="upper center", ncols=2, fontsize=8, frameon=False)
    figure.suptitle(FIGURES["bias_by_criterion.png"][0])
    figure.savefig(path)


def kappa_by_language(metrics: dict[str, Any], path: Path) -> None:
    """Fleiss' κ per language; undefined values are marked n/a with their subject count."""
    groups = metrics["by_language"]
    figure = _figure(7.5, 3.4)
    axes = figure.add_subplot()
    if not groups:
        _no_data(axes, "no pairs")
    else:
        names = [g["language"] for g in groups]
        values = [_value(g["fleiss_kappa"]) for g in groups]
        axes.bar(range(len(names)), [v if v is not None else 0.0 for v in values],
                 color=["#2f6db5" if v is None or v >= 0 else "#c0504d" for v in values])
        for i, (v, g) in enumerate(zip(values, groups)):
            label = "n/a" if v is None else f"{v:.2f}"
            axes.text(i, (v if v is not None and v > 0 else 0) + 0.03, f"{label}\nn={g['fleiss_kappa']['subjects']}",
                      ha="center", va="bottom", fontsize=8)
        axes.axhline(0, color="#333333", linewidth=0.8)
        axes.set_xticks(range(len(names)), names, fontsize=9)
        axes.set_ylim(min([-0.2, *(v - 0.1 for v in values if v is not None)]), 1.25)
        axes.set_ylabel("Fleiss' kappa")
    axes.set_title(FIGURES["kappa_by_language.png"][0])
    figure.savefig(path)


def calibration_by_strength(metrics: dict[str, Any], path: Path) -> None:
    """Per judge, agreement with the truth (Wilson 95 % whiskers) against the strength of its vote margin."""
    from matplotlib.ticker import MultipleLocator

    judges = metrics["calibration"]["by_judge"]
    figure = _figure(7.5, 3.6)
    axes = figure.add_subplot()
    if not judges:
        _no_data(axes, metrics["calibration"]["reason"] or "no pairs of known truth")
    else:
        offsets = [(i - (len(judges) - 1) / 2) * 0.012 for i in range(len(judges))]  # judges side by side, not on top
        for offset, judge in zip(offsets, judges):
            buckets = judge["buckets"]
            x = [b["strength"] + offset for b in buckets]
            y = [b["agreement"]["value"] for b in buckets]
            lower = [v - b["agreement"]["ci95"][0] for v, b in zip(y, buckets)]
            upper = [b["agreement"]["ci95"][1] - v for v, b in zip(y, buckets)]
            axes.errorbar(x, y, yerr=[lower, upper], marker="o", capsize=3, linewidth=1, label=judge["judge"])
            for xi, v, b in zip(x, y, buckets):
                axes.text(xi, min(v + 0.04, 1.12), f"n={b['pairs']}", ha="center", va="bottom", fontsize=7, color="#333333")
        axes.axhline(0.5, color="#333333", linewidth=0.8, linestyle="--")
        axes.set_xlim(-0.08, 1.08)
        axes.set_ylim(-0.05, 1.2)
        axes.xaxis.set_major_locator(MultipleLocator(0.25))
        axes.set_xlabel("strength = |matches - contradictions| / votes of the judge on the pair")
        axes.set_ylabel("share picking the chosen side")
        axes.legend(loc="lower right", frameon=False, fontsize=8)
    axes.set_title(FIGURES["calibration_by_strength.png"][0])
    figure.savefig(path)


def _short(criterion: str) -> str:
    return criterion.replace(" and ", " & ").replace("Maintainability", "Maint.")


def draw_figures(metrics: dict[str, Any], directory: Path) -> dict[str, tuple[str, str]]:
    """Every figure of FIGURES as a PNG in `directory`; returns {file name: (title, caption)}."""
    directory.mkdir(parents=True, exist_ok=True)
    margin_histogram(metrics, directory / "margin_histogram.png")
    bias_by_criterion(metrics, directory / "bias_by_criterion.png")
    kappa_by_language(metrics, directory / "kappa_by_language.png")
    calibration_by_strength(metrics, directory / "calibration_by_strength.png")
    return dict(FIGURES)
