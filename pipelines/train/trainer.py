"""The training loop: a fixed step plan, accelerate for devices and DDP, checkpoints that resume exactly.

The order of the pairs is a function of (seed, epoch) and a step's pairs a function of the step,
so a checkpoint needs only the step to find its place in the data. A checkpoint holds everything
else that the next step depends on: weights, optimizer and scheduler states, and every RNG state
of every process. Resumed from step k, a run takes the same steps as one that was never stopped.
"""

from __future__ import annotations

import json
import logging
import math
import random
import shutil
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipelines.run.library_logs import library_bars_off
from pipelines.train.config import METRICS_FILE, TrainConfig
from pipelines.train.data import PairEncoder, collate, prepare_pairs
from pipelines.train.model import RewardModel, export_sequence_classifier, pair_loss

log = logging.getLogger(__name__)

CHECKPOINT_PREFIX = "checkpoint-"
STATE_FILE = "trainer_state.json"
WEIGHTS_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.pt"
SCHEDULER_FILE = "scheduler.pt"
DROPPED_FILE = "dropped.jsonl"
RESULT_FILE = "train_result.json"
MODEL_DIR = "model"


@dataclass(frozen=True)
class TrainResult:
    """What a `train` call did: steps, the data funnel, the last metrics, and where it wrote."""

    steps: int  # optimizer steps done by the run so far (resumed ones included)
    total_steps: int  # steps of the whole run
    completed: bool  # False when stop_after_steps ended this invocation early
    pairs_read: int
    pairs_kept: int
    dropped: dict[str, int]  # reason -> pairs
    truncated: int  # kept pairs whose response was cut to fit max_length
    final_metrics: dict[str, float]  # the last step's metrics
    output_dir: str
    model_dir: str | None  # the exported AutoModelForSequenceClassification folder, once completed
    checkpoint: str | None  # the last checkpoint written
    metrics_file: str
    dropped_file: str
    resumed_from: str | None
    seconds: float
    checkpoints: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class StepPlan:
    """Which pairs every micro-step of every process reads.

    Each epoch is one permutation of the kept pairs, seeded by (seed, epoch) and extended
    cyclically to whole global batches (as DistributedSampler pads), so no pair is left out.
    """

    pairs: int
    batch_size: int
    accumulation: int
    processes: int
    seed: int
    epochs: int
    max_steps: int | None

    @property
    def global_batch(self) -> int:
        return self.batch_size * self.accumulation * self.processes

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.pairs / self.global_batch)

    @property
    def total_steps(self) -> int:
        return self.max_steps if self.max_steps is not None else self.epochs * self.steps_per_epoch

    def epoch_of(self, step: int) -> int:
        return step // self.steps_per_epoch

    @lru_cache(maxsize=2)  # noqa: B019 - a plan lives as long as its run
    def order(self, epoch: int) -> np.ndarray:
        permutation = np.random.default_rng([self.seed, epoch]).permutation(self.pairs)
        return np.resize(permutation, self.steps_per_epoch * self.global_batch)

    def micro_batch(self, step: int, micro: int, process: int) -> list[int]:
        """Pair indices of micro-step `micro` of optimizer step `step` (0-based) on `process`."""
        epoch, in_epoch = divmod(step, self.steps_per_epoch)
        start = in_epoch * self.global_batch + (micro * self.processes + process) * self.batch_size
        return self.order(epoch)[start: start + self.batch_size].tolist()


def load_tokenizer(folder: str) -> Any:
    """The model folder's tokenizer; without a pad token it pads with its end-of-sequence token."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError) as error:
        raise ValueError(f"cannot load a tokenizer from {folder}: {error}") from None
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token_id is None:
            raise ValueError(f"tokenizer of {folder} has neither a pad nor an end-of-sequence token; give it a pad token")
        log.warning("tokenizer of %s has no pad token; padding with %r", folder, tokenizer.eos_token)
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _optimizer(model: RewardModel, config: TrainConfig, fused: bool) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for parameter in model.parameters():
        if parameter.requires_grad:
            (decay if parameter.ndim >= 2 else no_decay).append(parameter)
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=config.learning_rate, betas=config.adam_betas, eps=config.adam_epsilon,
                             fused=fused or None)


def _scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig, total_steps: int) -> torch.optim.lr_scheduler.LRScheduler:
    from transformers import get_cosine_with_min_lr_schedule_with_warmup

    return get_cosine_with_min_lr_schedule_with_warmup(
        optimizer, num_warmup_steps=math.ceil(config.warmup_ratio * total_steps), num_training_steps=total_steps,
        min_lr=config.min_learning_rate)


def _rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def checkpoints_in(output_dir: Path) -> list[Path]:
    """Complete checkpoint folders of a run, oldest first."""
    found = [p for p in output_dir.glob(f"{CHECKPOINT_PREFIX}*") if (p / STATE_FILE).is_file()
             and p.name.removeprefix(CHECKPOINT_PREFIX).isdigit()]
    return sorted(found, key=lambda p: int(p.name.removeprefix(CHECKPOINT_PREFIX)))


def _resume_point(config: TrainConfig, output_dir: Path) -> Path | None:
    if config.resume is False:
        return None
    if config.resume is True:
        found = checkpoints_in(output_dir)
        if not found:
            log.info("no checkpoint in %s; starting afresh", output_dir)
            return None
        return found[-1]
    folder = Path(config.resume)
    if not (folder / STATE_FILE).is_file():
        raise FileNotFoundError(f"resume: {folder} is not a checkpoint folder (no {STATE_FILE})")
    return folder


def _bf16(config: TrainConfig) -> bool:
    available = not config.cpu and torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if config.bf16 is True and not available:
        raise ValueError("bf16: true needs a GPU with bfloat16 support; use bf16: auto to fall back to float32")
    return available if config.bf16 == "auto" else bool(config.bf16)


class _Run:
    """One invocation of `train`: the state it carries between steps."""

    def __init__(self, config: TrainConfig):
        from accelerate import Accelerator
        from accelerate.utils import DistributedDataParallelKwargs, set_seed

        self.config = config
        self.started = time.monotonic()
        self.output_dir = Path(config.output_dir)
        self.accelerator = Accelerator(
            mixed_precision="bf16" if _bf16(config) else "no", cpu=config.cpu,
            # An untied LM head gets no gradient when the LM loss is off.
            kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=config.lambda_lm == 0)])
        if self.accelerator.is_main_process:
            self.output_dir.mkdir(parents=True, exist_ok=True)
        set_seed(config.seed)

        self.tokenizer = load_tokenizer(config.model)
        self.encoder = PairEncoder(self.tokenizer, config.max_length)
        with self.accelerator.main_process_first():
            self.data = prepare_pairs(config.data, self.encoder, config.cache_dir, config.num_proc,
                                      self.output_dir / DROPPED_FILE if self.accelerator.is_main_process else None)
        if self.data.pairs_kept == 0:
            raise ValueError(f"no pair of {len(self.data.files)} corpus files is left to train on "
                             f"(read {self.data.pairs_read}, dropped {self.data.dropped})")
        self.plan = StepPlan(self.data.pairs_kept, config.batch_size, config.gradient_accumulation,
                             self.accelerator.num_processes, config.seed, config.epochs, config.max_steps)

        with library_bars_off():
            model = RewardModel.from_pretrained(config.model, config.attn_implementation)
        if config.gradient_checkpointing:
            model.lm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        self.resumed_from = _resume_point(config, self.output_dir)
        self.step = 0
        if self.resumed_from is not None:
            self.step = self._check_resumable(self.resumed_from)
            from safetensors.torch import load_model

            load_model(model, str(self.resumed_from / WEIGHTS_FILE), device="cpu")
        model.to(self.accelerator.device)
        model.train()
        optimizer = _optimizer(model, config, fused=self.accelerator.device.type == "cuda")
        self.model, self.optimizer = self.accelerator.prepare(model, optimizer)
        # The scheduler stays unprepared: accelerate would step it once per process.
        self.scheduler = _scheduler(optimizer, config, self.plan.total_steps)
        if self.resumed_from is not None:
            self._load_states(self.resumed_from)
        self.checkpoints: list[str] = []
        self.last_metrics: dict[str, float] = {}

    # -- checkpoints ---------------------------------------------------------------------------

    def _state(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "epoch": self.plan.epoch_of(self.step),
            "step_in_epoch": self.step % self.plan.steps_per_epoch,
            "order_seed": self.plan.seed,
            "steps_per_epoch": self.plan.steps_per_epoch,
            "total_steps": self.plan.total_steps,
            "global_batch": self.plan.global_batch,
            "pairs_kept": self.plan.pairs,
            "processes": self.plan.processes,
            "files": self.data.files,
            "config": self.config.model_dump(mode="json"),
        }

    def _check_resumable(self, folder: Path) -> int:
        saved = json.loads((folder / STATE_FILE).read_text(encoding="utf-8"))
        current = self._state()
        for key in ("order_seed", "global_batch", "pairs_kept", "total_steps"):
            if saved[key] != current[key]:
                raise ValueError(f"resume: {folder} was written with {key}={saved[key]}, this run has {current[key]}; "
                                 "resume with the config and data it was written with, or start a new output_dir")
        log.info("resuming from %s at step %d of %d", folder, saved["step"], saved["total_steps"])
        return int(saved["step"])

    def _load_states(self, folder: Path) -> None:
        self.optimizer.load_state_dict(torch.load(folder / OPTIMIZER_FILE, map_location="cpu", weights_only=True))
        self.scheduler.load_state_dict(torch.load(folder / SCHEDULER_FILE, weights_only=True))
        rng_file = folder / f"rng_state_{self.accelerator.process_index}.pt"
        if rng_file.is_file():
            _set_rng_state(torch.load(rng_file, weights_only=False))
        else:
            written_by = json.loads((folder / STATE_FILE).read_text(encoding="utf-8"))["processes"]
            log.warning("%s has no RNG state for process %d (written by %d processes); its RNG starts from the seed",
                        folder, self.accelerator.process_index, written_by)

    def save_checkpoint(self) -> Path:
        """checkpoint-<step>/: weights (reward model), optimizer, scheduler, RNG per process, data position."""
        from safetensors.torch import save_model

        accelerator = self.accelerator
        final = self.output_dir / f"{CHECKPOINT_PREFIX}{self.step}"
        partial = final.with_name(final.name + ".partial")
        if accelerator.is_main_process:
            shutil.rmtree(partial, ignore_errors=True)
            partial.mkdir(parents=True)
        accelerator.wait_for_everyone()
        torch.save(_rng_state(), partial / f"rng_state_{accelerator.process_index}.pt")
        if accelerator.is_main_process:
            save_model(accelerator.unwrap_model(self.model), str(partial / WEIGHTS_FILE))
            torch.save(self.optimizer.state_dict(), partial / OPTIMIZER_FILE)
            torch.save(self.scheduler.state_dict(), partial / SCHEDULER_FILE)
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            (partial / STATE_FILE).write_text(json.dumps(self._state(), indent=2), encoding="utf-8")
            shutil.rmtree(final, ignore_errors=True)
            partial.rename(final)
        accelerator.wait_for_everyone()
        self.checkpoints.append(str(final))
        return final

    # -- steps ---------------------------------------------------------------------------------

    def train_step(self) -> dict[str, float]:
        """One optimizer step over gradient_accumulation micro-batches; returns the step's metrics."""
        config, accelerator = self.config, self.accelerator
        sums = torch.zeros(9, dtype=torch.float64, device=accelerator.device)
        for micro in range(config.gradient_accumulation):
            indices = self.plan.micro_batch(self.step, micro, accelerator.process_index)
            batch = collate(self.data.pairs[indices], self.encoder.pad_id).to(accelerator.device)
            last_micro = micro == config.gradient_accumulation - 1
            with accelerator.no_sync(self.model) if not last_micro else nullcontext():
                output = self.model(batch.input_ids, batch.attention_mask,
                                    batch.lm_mask if config.lambda_lm > 0 else None)
                chosen, rejected = output.rewards[: batch.pairs], output.rewards[batch.pairs:]
                loss = pair_loss(chosen, rejected, output.lm_loss, config.lambda_lm, config.mu_magnitude,
                                 config.magnitude_form)
                accelerator.backward(loss.total / config.gradient_accumulation)
            rewards = output.rewards.detach().double()
            sums += torch.stack([
                loss.total.detach().double(), loss.bradley_terry.detach().double(), loss.lm.detach().double(),
                loss.magnitude.detach().double(), (chosen > rejected).double().mean(), (chosen - rejected).double().mean(),
                rewards.sum(), (rewards ** 2).sum(), torch.tensor(float(rewards.numel()), device=rewards.device,
                                                                    dtype=torch.float64),
            ]).detach()
        max_norm = config.max_grad_norm if config.max_grad_norm is not None else float("inf")
        grad_norm = accelerator.clip_grad_norm_(self.model.parameters(), max_norm)
        learning_rate = self.scheduler.get_last_lr()[0]
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1

        sums = accelerator.reduce(sums, reduction="sum")
        parts = config.gradient_accumulation * accelerator.num_processes
        count = sums[8].item()
        reward_mean = sums[6].item() / count
        return {
            "loss": sums[0].item() / parts,
            "bt_loss": sums[1].item() / parts,
            "lm_loss": sums[2].item() / parts,
            "magnitude": sums[3].item() / parts,
            "accuracy": sums[4].item() / parts,
            "margin": sums[5].item() / parts,
            "reward_mean": reward_mean,
            "reward_std": math.sqrt(max(sums[7].item() / count - reward_mean ** 2, 0.0)),
            "grad_norm": float(grad_norm),
            "lr": learning_rate,
        }

    def run(self) -> TrainResult:
        from tqdm.auto import tqdm

        config, accelerator, plan = self.config, self.accelerator, self.plan
        metrics_file = self.output_dir / METRICS_FILE
        main = accelerator.is_main_process
        if main:
            self._log_line(metrics_file, {
                "event": "start", "step": self.step, "total_steps": plan.total_steps, "steps_per_epoch": plan.steps_per_epoch,
                "global_batch": plan.global_batch, "processes": plan.processes, "device": str(accelerator.device),
                "mixed_precision": accelerator.mixed_precision, "resumed_from": str(self.resumed_from) if self.resumed_from else None,
                "pairs_read": self.data.pairs_read, "pairs_kept": self.data.pairs_kept, "dropped": self.data.dropped,
                "truncated": self.data.truncated,
            })
        stop_at = plan.total_steps if config.stop_after_steps is None else min(config.stop_after_steps, plan.total_steps)
        progress = tqdm(total=plan.total_steps, initial=self.step, desc="Training", disable=not main)
        while self.step < stop_at:
            started = time.perf_counter()
            metrics = self.train_step()
            metrics["step_seconds"] = time.perf_counter() - started
            self.last_metrics = metrics
            progress.update(1)
            progress.set_postfix(loss=f"{metrics['loss']:.4f}", acc=f"{metrics['accuracy']:.2f}")
            if main and (self.step % config.log_every == 0 or self.step in (1, stop_at)):
                self._log_line(metrics_file, {"event": "step", "step": self.step,
                                              "epoch": self.step / plan.steps_per_epoch, **metrics})
            if config.save_every and self.step % config.save_every == 0 or self.step == stop_at:
                self.save_checkpoint()
        progress.close()

        completed = self.step >= plan.total_steps
        model_dir = None
        if completed:
            model_dir = self.output_dir / MODEL_DIR
            if main:
                export_sequence_classifier(accelerator.unwrap_model(self.model), self.tokenizer, model_dir)
            accelerator.wait_for_everyone()
        result = TrainResult(
            steps=self.step, total_steps=plan.total_steps, completed=completed, pairs_read=self.data.pairs_read,
            pairs_kept=self.data.pairs_kept, dropped=self.data.dropped, truncated=self.data.truncated,
            final_metrics=self.last_metrics, output_dir=str(self.output_dir),
            model_dir=str(model_dir) if model_dir else None,
            checkpoint=self.checkpoints[-1] if self.checkpoints else None,
            metrics_file=str(metrics_file), dropped_file=str(self.output_dir / DROPPED_FILE),
            resumed_from=str(self.resumed_from) if self.resumed_from else None,
            seconds=time.monotonic() - self.started, checkpoints=list(self.checkpoints),
        )
        if main:
            self._log_line(metrics_file, {"event": "end", "step": self.step, "completed": completed,
                                          "model_dir": result.model_dir, "seconds": result.seconds})
            (self.output_dir / RESULT_FILE).write_text(json.dumps(asdict(result), indent=2), encoding="utf-8")
        return result

    @staticmethod
    def _log_line(path: Path, record: dict[str, Any]) -> None:
        with path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")


def train(config: TrainConfig) -> TrainResult:
    """Train a Bradley-Terry reward model as `config` says; resumable, single process or under a launcher."""
    return _Run(config).run()
