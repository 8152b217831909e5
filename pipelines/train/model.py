"""The reward model: a causal LM backbone with a linear head on the last real token, its loss, and its export.

The head reads the final hidden state of the last non-padding token (right padding), as
transformers' `*ForSequenceClassification` models do, so the trained model exports as one of
those (`num_labels=1`, the head becomes `score`) and scores the same. The LM loss keeps the
backbone's language modelling alive: next-token cross-entropy on the chosen response tokens only,
computed from the same forward pass, on the masked positions alone (no full-vocabulary logits
for the prompt or padding).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pipelines.run.library_logs import library_bars_off


@dataclass
class RewardOutput:
    rewards: torch.Tensor  # (2B,) float32: chosen rewards, then rejected ones
    lm_loss: torch.Tensor | None  # mean next-token loss over the chosen response tokens


class RewardModel(nn.Module):
    """`lm` (a `*ForCausalLM`) and `head`, a bias-free linear map of the last token's hidden state to a reward."""

    def __init__(self, lm: nn.Module):
        super().__init__()
        self.lm = lm
        hidden = lm.config.get_text_config().hidden_size
        self.head = nn.Linear(hidden, 1, bias=False)
        # Zero start: every reward is 0 until the head learns, as in the Themis-RM runbook.
        nn.init.zeros_(self.head.weight)

    @classmethod
    def from_pretrained(cls, folder: str, attn_implementation: str | None = None) -> RewardModel:
        from transformers import AutoModelForCausalLM

        kwargs: dict[str, Any] = {"dtype": torch.float32, "local_files_only": True}
        if attn_implementation:
            kwargs["attn_implementation"] = attn_implementation
        try:
            lm = AutoModelForCausalLM.from_pretrained(folder, **kwargs)
        except (OSError, ValueError) as error:
            raise ValueError(f"cannot load a causal LM from {folder}: {error}") from None
        lm.config.use_cache = False
        return cls(lm)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                lm_mask: torch.Tensor | None = None) -> RewardOutput:
        hidden = self.lm.base_model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state
        last = attention_mask.sum(dim=1) - 1
        pooled = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
        rewards = self.head(pooled).squeeze(-1).float()
        lm_loss = None
        if lm_mask is not None:
            # The state at position t predicts token t + 1: targets are the masked tokens, states the ones before.
            targets = lm_mask[:, 1:]
            states = hidden[:, :-1][targets]
            logits = self.lm.get_output_embeddings()(states).float()
            lm_loss = F.cross_entropy(logits, input_ids[:, 1:][targets])
        return RewardOutput(rewards, lm_loss)


def sum_abs_magnitude(chosen: torch.Tensor, rejected: torch.Tensor) -> torch.Tensor:
    """(|r_c| + |r_r|)^2 per pair: pulls both rewards towards 0."""
    return (chosen.abs() + rejected.abs()) ** 2


def centering_magnitude(chosen: torch.Tensor, rejected: torch.Tensor) -> torch.Tensor:
    """(r_c + r_r)^2 per pair: keeps each pair's rewards centred on 0, leaves the margin free."""
    return (chosen + rejected) ** 2


MAGNITUDE_PENALTIES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "sum_abs": sum_abs_magnitude,
    "centering": centering_magnitude,
}


@dataclass
class PairLoss:
    """The loss of a micro-batch and its parts (all scalars)."""

    total: torch.Tensor
    bradley_terry: torch.Tensor
    lm: torch.Tensor
    magnitude: torch.Tensor


def pair_loss(chosen: torch.Tensor, rejected: torch.Tensor, lm_loss: torch.Tensor | None,
              lambda_lm: float, mu_magnitude: float, magnitude_form: str) -> PairLoss:
    """-log sigmoid(r_c - r_r) + lambda_lm * LM + mu_magnitude * magnitude, each averaged over the pairs."""
    bradley_terry = -F.logsigmoid(chosen - rejected).mean()
    magnitude = MAGNITUDE_PENALTIES[magnitude_form](chosen, rejected).mean()
    lm = lm_loss if lm_loss is not None else torch.zeros((), device=chosen.device)
    total = bradley_terry + lambda_lm * lm + mu_magnitude * magnitude
    return PairLoss(total, bradley_terry, lm, magnitude)


def export_sequence_classifier(model: RewardModel, tokenizer: Any, folder: Path) -> Path:
    """Save `model` as a `*ForSequenceClassification` folder (num_labels=1, head -> `score`) with the tokenizer."""
    from accelerate import init_empty_weights
    from transformers import AutoModelForSequenceClassification

    config = model.lm.config.__class__.from_dict(model.lm.config.to_dict())
    config.num_labels = 1
    config.pad_token_id = tokenizer.pad_token_id
    config.architectures = None
    config.use_cache = True
    with init_empty_weights():
        classifier = AutoModelForSequenceClassification.from_config(config)
    score = getattr(classifier, "score", None)
    if not isinstance(score, nn.Linear) or score.bias is not None or score.weight.shape[0] != 1:
        raise TypeError(f"{type(classifier).__name__} has no bias-free `score` head; cannot export the reward head into it")
    prefix = classifier.base_model_prefix
    state = {f"{prefix}.{key}": value.detach().clone().float() for key, value in model.lm.base_model.state_dict().items()}
    state["score.weight"] = model.head.weight.detach().clone().float()
    classifier.load_state_dict(state, strict=True, assign=True)
    classifier.eval()
    folder.mkdir(parents=True, exist_ok=True)
    with library_bars_off():
        classifier.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
