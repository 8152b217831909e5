"""The bundled Bradley-Terry reward-model trainer: corpus Parquet in, an `AutoModelForSequenceClassification` out.

    from pipelines.train import TrainConfig, train
    result = train(TrainConfig(model="models/Qwen3-0.6B", data=["runs/x/assemble"], output_dir="runs/x/rm"))

Objective per pair: -log sigmoid(r_c - r_r) + lambda_lm * LM(chosen response) + mu * magnitude,
with the magnitude either (|r_c| + |r_r|)^2 (`sum_abs`) or (r_c + r_r)^2 (`centering`). Pairs are
rendered with the model's chat template; over-long responses are truncated (the prompt never),
and pairs that cannot fit or become identical are dropped and counted (`dropped.jsonl`,
`metrics.jsonl`, the returned `TrainResult`). Output folder: `metrics.jsonl` (one JSON line per
logged step), `checkpoint-<step>/` (resumable exactly), `model/` (the exported reward model with
its tokenizer), `train_result.json`.

Running it:

- one process (CPU or one GPU), no launcher: `python -m pipelines.train --config train.yaml`;
- several GPUs, data parallel (DDP through accelerate): `accelerate launch --multi_gpu
  --num_processes 8 -m pipelines.train --config train.yaml`, or `torchrun --nproc_per_node 8
  -m pipelines.train --config train.yaml`; the same works for `codepref train` run under
  `accelerate launch` / `torchrun` (the launcher sets the process group up, `train` joins it).
  Every process holds a full copy of the model (DDP); FSDP/DeepSpeed sharding is not supported
  by the checkpoint code (it saves full state dicts from the main process).

Defaults are those of the Themis-RM preference-modelling stage, as its training runbook reports
them (iNeil77/Themis, Training/README.md, "Reference Training Configuration"): peak LR 1e-5 to a
terminal 5e-7 on a cosine with 5% warm-up, behaviour-cloning (LM) coefficient 0.25, magnitude
coefficient 0.001, AdamW betas (0.9, 0.95), eps 1e-8, weight decay 0.1, gradient clipping 1.5,
4096 tokens, global batch 512, one epoch, bf16, gradient checkpointing; the zero-initialised
reward head and the (|r_w| + |r_l|)^2 magnitude form are from the same runbook's loss section.
The runbook's LM term covers the whole chosen sequence; here it covers the chosen response only.
"""

from typing import Any

from pipelines.train.config import TrainConfig

__all__ = ["TrainConfig", "TrainResult", "train"]


def __getattr__(name: str) -> Any:
    """`train` and `TrainResult` load the trainer (torch, transformers) on first use, so reading the config stays light."""
    if name in ("train", "TrainResult"):
        from pipelines.train import trainer

        return getattr(trainer, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
