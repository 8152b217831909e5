"""Agreement statistics of the audit: proportions with Wilson intervals, Fleiss' and Cohen's κ.

Every estimate is a plain dict ready for JSON: a value, the counts it came from, and where the value
is undefined (an empty denominator, κ's 0/0) `value` is None and `reason` says why. No NaN ever
leaves this module.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

Z_95 = 1.959963984540054  # two-sided 95 % normal quantile


def wilson_interval(successes: int, trials: int, z: float = Z_95) -> tuple[float, float] | None:
    """Wilson score interval of a binomial proportion; None for no trials."""
    if trials <= 0:
        return None
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    # The interval always holds p; clamping keeps rounding (at k = 0 or k = n) from saying otherwise.
    return min(p, max(0.0, centre - half)), max(p, min(1.0, centre + half))


def proportion(successes: int, trials: int, empty_reason: str) -> dict[str, Any]:
    """`successes / trials` with its Wilson 95 % interval, or None and `empty_reason` when there are no trials."""
    successes, trials = int(successes or 0), int(trials or 0)
    interval = wilson_interval(successes, trials)
    return {
        "value": successes / trials if trials else None,
        "k": successes,
        "n": trials,
        "ci95": list(interval) if interval else None,
        "reason": None if trials else empty_reason,
    }


def mean(total: float | None, count: int, empty_reason: str) -> dict[str, Any]:
    """`total / count`, or None and `empty_reason` when nothing was averaged."""
    count = int(count or 0)
    return {"value": float(total) / count if count else None, "n": count, "reason": None if count else empty_reason}


def fleiss_kappa(agreement_sum: float, subjects: int, category_totals: Mapping[str, int]) -> dict[str, Any]:
    """Fleiss' κ from its sufficient statistics, for subjects rated by unequal numbers of raters.

    `agreement_sum` is Σ_i P_i over the `subjects` (each with n_i ≥ 2 ratings), where
    P_i = Σ_j n_ij (n_ij - 1) / (n_i (n_i - 1)); `category_totals` are Σ_i n_ij over the same subjects.
    κ = (P̄ - P̄e) / (1 - P̄e), P̄ = agreement_sum / subjects, P̄e = Σ_j p_j², p_j = total_j / Σ totals.
    """
    subjects = int(subjects or 0)
    ratings = sum(int(v or 0) for v in category_totals.values())
    result: dict[str, Any] = {"value": None, "subjects": subjects, "ratings": ratings, "observed": None, "expected": None, "reason": None}
    if subjects == 0:
        result["reason"] = "no pair has two non-error votes"
        return result
    observed = float(agreement_sum) / subjects
    expected = sum((int(v or 0) / ratings) ** 2 for v in category_totals.values())
    result.update(observed=observed, expected=expected)
    used = [name for name, v in category_totals.items() if v]
    if len(used) == 1:
        result["reason"] = (f"every non-error vote is {used[0]!r}: observed and chance agreement are both 1, "
                            "so κ is 0/0 (agreement is perfect but says nothing beyond chance)")
        return result
    result["value"] = (observed - expected) / (1 - expected)
    return result


def cohen_kappa(cells: Mapping[tuple[str, str], int], categories: Sequence[str]) -> dict[str, Any]:
    """Cohen's κ of two raters from their confusion counts `cells[(category_a, category_b)]`.

    κ = (p_o - p_e) / (1 - p_e), p_o the share of equal categories, p_e = Σ_k p_a(k) p_b(k).
    """
    subjects = sum(int(n) for n in cells.values())
    result: dict[str, Any] = {"value": None, "subjects": subjects, "observed": None, "expected": None, "reason": None}
    if subjects == 0:
        result["reason"] = "no pair has a non-error vote from both"
        return result
    observed = sum(int(cells.get((k, k), 0)) for k in categories) / subjects
    share_a = {k: sum(int(n) for (a, _), n in cells.items() if a == k) / subjects for k in categories}
    share_b = {k: sum(int(n) for (_, b), n in cells.items() if b == k) / subjects for k in categories}
    expected = sum(share_a[k] * share_b[k] for k in categories)
    result.update(observed=observed, expected=expected)
    if math.isclose(expected, 1.0):
        (only,) = [k for k in categories if share_a[k]]
        result["reason"] = (f"both put every pair in {only!r}: observed and chance agreement are both 1, so κ is 0/0")
        return result
    result["value"] = (observed - expected) / (1 - expected)
    return result
