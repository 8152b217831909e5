"""The trainer's typed config: one pydantic model, defaults from the published Themis-RM recipe.

Defaults follow the preference-modelling (PM) stage of the Themis-RM runbook (see the package
docstring for the sources): peak learning rate 1e-5 decaying on a cosine to 5e-7 after a 5%
warm-up, LM (behaviour cloning) weight 0.25, magnitude weight 0.001, AdamW betas (0.9, 0.95),
eps 1e-8, weight decay 0.1, gradient clipping 1.5, 4096 tokens, one epoch.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

# Why the trainer drops a pair (counted in train_result.json and the stage's manifest, listed in dropped.jsonl).
PROMPT_TOO_LONG = "prompt_too_long"
IDENTICAL_AFTER_TRUNCATION = "identical_after_truncation"
IDENTICAL_RESPONSES = "identical_responses"
DROP_REASONS = {
    PROMPT_TOO_LONG: "the prompt and the end of turn leave no response token within `max_length`",
    IDENTICAL_AFTER_TRUNCATION: "chosen and rejected become the same tokens once cut to `max_length`",
    IDENTICAL_RESPONSES: "chosen and rejected are the same response tokens",
}

METRICS_FILE = "metrics.jsonl"  # the trainer's log, one JSON object a line (read by the run's progress bar)


class TrainConfig(BaseModel):
    """A Bradley-Terry reward-model training run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(description="Local folder of the causal LM to start from (weights, config, tokenizer with a chat template).")
    data: list[str] = Field(
        description="Corpus Parquet files, or folders of them (a folder's part-*.parquet, else its *.parquet); "
        "columns system, input, chosen, rejected (idx, when present, names dropped pairs)."
    )
    output_dir: str = Field(description="Folder for checkpoints, metrics.jsonl, dropped.jsonl and the final model (model/).")
    resume: bool | str = Field(
        False,
        description="true: continue from the newest checkpoint-<step> in output_dir (start afresh when there is none); "
        "a path: continue from that checkpoint folder.",
    )
    max_length: int = Field(4096, ge=8, description="Most tokens of one conversation; longer responses are truncated, the prompt never.")
    batch_size: int = Field(4, ge=1, description="Preference pairs per process and micro-step.")
    gradient_accumulation: int = Field(
        16, ge=1, description="Micro-steps per optimizer step; global batch = batch_size x gradient_accumulation x processes "
        "(the published PM stage used 512)."
    )
    epochs: int = Field(1, ge=1, description="Passes over the kept pairs (ignored when max_steps is set).")
    max_steps: int | None = Field(None, ge=1, description="Optimizer steps of the whole run; overrides epochs.")
    stop_after_steps: int | None = Field(
        None, ge=1, description="End this invocation after this optimizer step (a checkpoint is written there); the schedule "
        "still spans the whole run, so a later resume continues it. For time-sliced jobs."
    )
    learning_rate: float = Field(1e-5, gt=0, description="Peak learning rate, reached at the end of the warm-up.")
    min_learning_rate: float = Field(5e-7, ge=0, description="Learning rate the cosine decays to at the last step.")
    warmup_ratio: float = Field(0.05, ge=0, lt=1, description="Share of the steps spent warming up linearly from 0.")
    lambda_lm: float = Field(0.25, ge=0, description="Weight of the next-token loss on the chosen response tokens (0 disables it).")
    mu_magnitude: float = Field(0.001, ge=0, description="Weight of the reward magnitude penalty.")
    magnitude_form: Literal["sum_abs", "centering"] = Field(
        "sum_abs", description="Magnitude penalty per pair: sum_abs = (|r_c| + |r_r|)^2, centering = (r_c + r_r)^2."
    )
    adam_betas: tuple[float, float] = Field((0.9, 0.95), description="AdamW betas.")
    adam_epsilon: float = Field(1e-8, gt=0, description="AdamW epsilon.")
    weight_decay: float = Field(0.1, ge=0, description="AdamW weight decay (matrices only; biases and norms are not decayed).")
    max_grad_norm: float | None = Field(1.5, gt=0, description="Clip the global gradient norm to this; null: no clipping.")
    bf16: bool | Literal["auto"] = Field(
        "auto", description="bfloat16 autocast: auto = on where the GPU supports it, off on CPU; true fails without support."
    )
    gradient_checkpointing: bool = Field(True, description="Recompute activations in the backward pass (less memory, ~30% slower).")
    attn_implementation: str | None = Field(
        None, description="Attention kernel passed to transformers ('sdpa', 'flash_attention_2', 'eager'); null: its default."
    )
    cpu: bool = Field(False, description="Train on CPU even when a GPU is present.")
    seed: int = Field(42, description="Seed of the shuffled order (one permutation per epoch) and of every RNG.")
    save_every: int = Field(200, ge=0, description="Write a checkpoint every this many optimizer steps (0: only at the end).")
    log_every: int = Field(10, ge=1, description="Write a metrics line every this many optimizer steps (the first and last always).")
    num_proc: int = Field(1, ge=1, description="Processes that tokenize the corpus.")
    cache_dir: str | None = Field(None, description="datasets cache for the corpus and its tokenized form; null: the Hugging Face default.")

    @field_validator("data", mode="before")
    @classmethod
    def _one_path_is_a_list(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value

    @field_validator("data")
    @classmethod
    def _not_empty(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("name at least one Parquet file or folder")
        return value
