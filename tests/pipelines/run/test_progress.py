"""Progress bars of a run: what the stages report while they run, and how the terminal shows it."""

from __future__ import annotations

import io
import json
import time

from rich.console import Console

from llm.cache import AnswerCache, AnswerKey
from parsers import LanguageRegistry
from parsers.registry import DEFAULT_REGISTRY
from pipelines.core import Progress, StageContext
from pipelines.label.stage import Label, LabelConfig
from pipelines.run.progress import POLL_SECONDS, RunProgress
from pipelines.train.stage import Train, TrainStageConfig


def context(run_dir) -> StageContext:  # type: ignore[no-untyped-def]
    return StageContext(run_dir=str(run_dir), languages=LanguageRegistry.from_files([DEFAULT_REGISTRY]))


def test_label_progress_counts_this_judges_cached_answers_of_the_answers_needed(tmp_path):
    """12 pairs, 4 of them execution-verified: execution labels those 4 (no answer needed), the judges vote on a sample
    of 5 of the other 8 and, first, on the 4 verified ones to qualify."""
    from schemas import Candidate
    from storage import list_parts
    from tests.support.stage_fixtures import candidate, write_stage

    pairs = [candidate(f"p{i}", "a = 1\n", "a = 2\n", verified=True if i < 4 else None) for i in range(12)]
    write_stage(tmp_path, "dedup", pairs, Candidate)
    inputs = StageContext(run_dir=str(tmp_path), languages=context(tmp_path).languages,
                          input_files={"dedup": list_parts(str(tmp_path / "dedup"))})
    config = LabelConfig(votes=4, sample=5, judges=[{"model": "smollm2"}, {"model": "smollm2", "name": "second"}])
    probe = Label.progress(config, inputs, str(tmp_path / "label"), records_in=12)
    assert probe.unit == "answers" and probe.poll() == (0, (5 + 4) * 4 * 2)  # no cache yet
    unmeasured = LabelConfig(votes=4, sample=5, judges=config.judges, qualify=None)
    assert Label.progress(unmeasured, inputs, str(tmp_path / "label"), records_in=12).poll() == (0, 5 * 4 * 2)
    cache = AnswerCache(str(tmp_path / "label_answers"))
    cache.put_many([(AnswerKey(judge, "t1", f"p{i}", "chosen_first", 0, 1), "[VERDICT]A[/VERDICT]")
                    for judge in ("smollm2", "second", "another-run's-judge") for i in range(3)])
    assert probe.poll() == (0, 72)  # not written yet: the batch is still being asked
    cache.flush()
    assert probe.poll() == (6, 72)
    cache.put_many([(AnswerKey("smollm2", "t1", "p9", "chosen_first", 0, 1), "[VERDICT]B[/VERDICT]")])
    cache.close()  # a second answer file
    assert probe.poll() == (7, 72)


def test_train_progress_reads_the_steps_the_trainer_logged(tmp_path):
    config = TrainStageConfig(model="m", max_steps=4)
    probe = Train.progress(config, context(tmp_path), str(tmp_path), records_in=8)
    assert probe.poll() == (0, None)
    lines = [{"event": "start", "step": 0, "total_steps": 4}, {"event": "step", "step": 1}, {"event": "step", "step": 2}]
    (tmp_path / "metrics.jsonl").write_text("\n".join(json.dumps(line) for line in lines) + "\n{\"event\": \"st")
    assert probe.poll() == (2, 4)  # the half-written last line is skipped


def test_run_progress_draws_a_bar_from_the_probe_and_clears_it_when_the_stage_ends():
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120, color_system=None)
    done = {"answers": 3}
    with RunProgress(console) as progress:
        progress.started("label", Progress("answers", lambda: (done["answers"], 8)))
        done["answers"] = 5
        time.sleep(POLL_SECONDS * 2.5)
        progress.finished()
        progress.started("mine", None)  # no probe: a spinner and the time
        progress.finished()
    text = out.getvalue()
    assert "running label" in text and "5/8 answers" in text and "running mine" in text
