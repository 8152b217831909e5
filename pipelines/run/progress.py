"""Progress of a run on the terminal: a line per running stage with a bar where the stage can say how
far it is (judge answers, training steps), else a spinner, and the time it has taken so far."""

from __future__ import annotations

import os
import threading
from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from pipelines.core import Progress as StageProgress

POLL_SECONDS = 1.0


class RunProgress:
    """Context manager; pass `started` as the run's `on_start` and `finished` after each stage."""

    def __init__(self, console: Console):
        self.console = console
        self.bars = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                             TextColumn("{task.fields[unit]}"), TimeElapsedColumn(), console=console, transient=True)
        self._current: tuple[TaskID, StageProgress | None] | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._poll_forever, name="run-progress", daemon=True)
        self._tqdm_was: str | None = None

    def __enter__(self) -> RunProgress:
        if self.console.is_terminal:  # the bars replace the trainer's own tqdm bar, which would tear them
            self._tqdm_was = os.environ.get("TQDM_DISABLE")
            os.environ["TQDM_DISABLE"] = "1"
        self.bars.start()
        self._poller.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        self._stop.set()
        self._poller.join(timeout=5)
        self.bars.stop()
        if self.console.is_terminal:
            if self._tqdm_was is None:
                os.environ.pop("TQDM_DISABLE", None)
            else:
                os.environ["TQDM_DISABLE"] = self._tqdm_was

    def started(self, stage: str, probe: StageProgress | None) -> None:
        with self._lock:
            task = self.bars.add_task(f"running {stage}", total=None, unit=probe.unit if probe else "")
            self._current = (task, probe)
        self._poll_once()

    def finished(self) -> None:
        with self._lock:
            if self._current is not None:
                self.bars.remove_task(self._current[0])
                self._current = None

    def _poll_once(self) -> None:
        with self._lock:
            if self._current is None or self._current[1] is None:
                return
            task, probe = self._current
            try:
                done, total = probe.poll()
            except Exception:  # noqa: BLE001 - a progress bar never stops a run
                return
            self.bars.update(task, completed=done, total=total)

    def _poll_forever(self) -> None:
        while not self._stop.wait(POLL_SECONDS):
            self._poll_once()
