"""Label-quality audit of a run: agreement, bias and ground-truth metrics of the judges' votes (DuckDB over
RUN_DIR/label), a static HTML report with figures, and a blind human-review round trip.

    audit(run_dir, out)                       -> metrics dict; OUT/metrics.json, OUT/report.html, OUT/figures/*.png
    sample(run_dir, out, size, seed)          -> summary; OUT/items.jsonl, items.csv, review.html, review_key.json
    import_verdicts(key, verdicts, out=None)  -> agreement report (judge vs human, human vs ground truth)
"""

from audit.judged import AuditError
from audit.metrics import DEFINITIONS, compute_metrics
from audit.report import METRICS_FILE, REPORT_FILE, audit
from audit.review import (
    IMPORT_REPORT,
    KEY_FILE,
    REVIEW_PAGE,
    import_verdicts,
    margin_bucket,
    sample,
)

__all__ = [
    "DEFINITIONS",
    "IMPORT_REPORT",
    "KEY_FILE",
    "METRICS_FILE",
    "REPORT_FILE",
    "REVIEW_PAGE",
    "AuditError",
    "audit",
    "compute_metrics",
    "import_verdicts",
    "margin_bucket",
    "sample",
]
