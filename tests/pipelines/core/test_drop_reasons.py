"""Every reason a stage can drop a record for is declared, and the README's tables say what is declared."""

from __future__ import annotations

import ast
import json
from pathlib import Path

from pipelines.core import STAGES, TaskStage
from pipelines.core.drop_tables import README, render, sections
from pipelines.run.config import RunConfig, import_builtin_stages
from pipelines.run.orchestrator import run
from storage import StageManifest
from tests.support.inputs import INSTRUCT, small_run_config, small_run_repository

REPO = Path(__file__).resolve().parents[3]
# Files that still call the low-level drop_record themselves rather than route through a declarer.
# The dedup stage's DropDuplicates (moving from pipelines/dedup/stage.py to transforms.py) gives the reasons
# pipelines.dedup.filters.DUPLICATES declares, still through drop_record (to convert once it has moved).
LOW_LEVEL = {"pipelines/core/filters.py", "pipelines/dedup/stage.py", "pipelines/dedup/transforms.py"}


def builtin_stages() -> list[str]:
    """The product's stages (not those test modules register)."""
    import_builtin_stages()
    return [name for name in STAGES.names() if STAGES[name].__module__.startswith("pipelines.")]


def test_the_readme_tables_are_the_declared_reasons():
    text = README.read_text(encoding="utf-8")
    assert render(text) == text, "README.md's drop-reason tables are stale: run python -m pipelines.core.drop_tables"
    assert sorted(sections(text)) == sorted(name for name in builtin_stages() if STAGES[name].drop_reasons())


def test_every_record_dropping_stage_declares_its_reasons():
    for name in builtin_stages():
        stage = STAGES[name]
        if not issubclass(stage, TaskStage):
            assert stage.drop_reasons(), f"{name} declares no drop reasons (Stage.drops)"
        for reason, (by, meaning) in stage.drop_reasons().items():
            assert reason.isidentifier() and by and meaning, (name, reason)


def test_stages_drop_only_through_declared_reasons():
    """No module of the pipelines calls the low-level drop_record but the filter protocol's own (and those listed)."""
    callers = set()
    for path in sorted((REPO / "pipelines").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "drop_record":
                callers.add(str(path.relative_to(REPO)))
    assert callers <= LOW_LEVEL


def test_a_run_drops_only_for_reasons_its_stages_declare(tmp_path):
    """The reproducibility run (mine -> synthesize -> parse -> dedup -> assemble), with a few rows that each stage drops."""
    repo = small_run_repository(tmp_path / "octo-stats")
    repo.write("src/notes.py", "x = 1\n")
    repo.commit("wip")  # message_too_short
    rows = [*INSTRUCT, {"id": "r4", "instruction": "Nothing to mutate.", "solution": "pass\n"},  # no_mutation_site
            {"id": "r5", "solution": "x = 1\n"}]  # missing_columns
    instruct = tmp_path / "instruct.jsonl"
    instruct.write_text("".join(json.dumps(row) + "\n" for row in rows) + "not json\n")  # malformed_row
    import_builtin_stages()
    run(RunConfig.model_validate(small_run_config(tmp_path / "run", {"repo": repo.path, "instruct": instruct}, "in_memory", 1)))
    dropped = {}
    for name in ("mine", "synthesize", "parse", "dedup", "assemble"):
        manifest = StageManifest.read(str(tmp_path / "run" / name))
        dropped[name] = set(manifest.dropped)
        assert dropped[name] <= set(STAGES[name].drop_reasons()), name
    assert {"root_commit", "message_too_short"} <= dropped["mine"]
    assert {"no_mutation_site", "missing_columns", "malformed_row"} <= dropped["synthesize"]
    assert "exact_duplicate" in dropped["dedup"]
