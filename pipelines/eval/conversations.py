"""How a benchmark pair reads to the reward model: an optional system message, the prompt as the
user turn, one response as the assistant turn, rendered by the tokenizer's chat template.

System prompts come from the corpus's own template (pipelines.assemble.system_prompts), so train and
eval read alike: `none`; `full`, all five criteria (in the order the corpus draws for that pair id);
`per-criterion`, the row's aspect alone.

Length policy: the chat template adds the special tokens (the rendered text is tokenized without
adding more). A conversation longer than `max_length` tokens loses the start of its prompt, the same
cut for both sides of a pair, so chosen and rejected are judged on the same prompt; a pair whose
response does not fit even with an empty prompt cannot be scored, and is an error naming it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pipelines.assemble.system_prompts import SystemPromptShares, draw
from pipelines.core.registry import Registry
from pipelines.eval.benchmark import BenchPair
from schemas import ASPECTS, CRITERIA

SYSTEM_PROMPTS: Registry[Callable[[BenchPair], str | None]] = Registry("system prompt mode")
_ONLY_CRITERION = SystemPromptShares(none=0.0, criterion=1.0, all=0.0)
_ONLY_ALL = SystemPromptShares(none=0.0, criterion=0.0, all=1.0)


class PairError(ValueError):
    """Pairs that cannot be turned into conversations; the message names them."""


@SYSTEM_PROMPTS.register("none")
def no_system_prompt(pair: BenchPair) -> str | None:
    return None


@SYSTEM_PROMPTS.register("full")
def all_criteria(pair: BenchPair) -> str | None:
    """All five criteria, shuffled per pair id exactly as the corpus's `all` prompts are."""
    return draw(pair.id, CRITERIA[0], _ONLY_ALL)[1]


@SYSTEM_PROMPTS.register("per-criterion")
def pair_criterion(pair: BenchPair) -> str | None:
    """The row's aspect (any spelling the vocabulary knows, e.g. `Runtime_Efficiency`)."""
    criterion = ASPECTS.canonical(pair.aspect) if pair.aspect in ASPECTS else None
    if criterion not in CRITERIA:
        raise PairError(f"pair {pair.id}: aspect {pair.aspect!r} is not one of the criteria "
                        f"({', '.join(CRITERIA)}); use system mode `none` or `full` for it")
    return draw(pair.id, criterion, _ONLY_CRITERION)[1]


def messages(pair: BenchPair, response: str, system_mode: str, prompt: str | None = None) -> list[dict[str, str]]:
    """The conversation of one side of a pair; `prompt` replaces the pair's prompt (a truncated one)."""
    system = SYSTEM_PROMPTS[system_mode](pair)
    turns = [{"role": "system", "content": system}] if system else []
    return turns + [{"role": "user", "content": pair.prompt if prompt is None else prompt},
                    {"role": "assistant", "content": response}]


@dataclass(frozen=True)
class EncodedBenchPair:
    """Token ids of both sides of a pair, and how many prompt tokens were cut from the left."""

    pair_id: str
    chosen: list[int]
    rejected: list[int]
    prompt_tokens_cut: int


class BenchPairEncoder:
    """Renders and tokenizes pairs for one tokenizer, system mode and length limit."""

    def __init__(self, tokenizer: Any, system_mode: str, max_length: int):
        SYSTEM_PROMPTS[system_mode]  # an unknown mode fails here with the known ones
        if not getattr(tokenizer, "chat_template", None):
            raise PairError(f"tokenizer {getattr(tokenizer, 'name_or_path', '')!r} has no chat template; "
                            "a reward model is scored on chat-formatted conversations")
        self.tokenizer = tokenizer
        self.system_mode = system_mode
        self.max_length = max_length

    def render(self, pair: BenchPair, response: str, prompt: str | None = None) -> str:
        """The conversation as text, through the tokenizer's chat template."""
        return self.tokenizer.apply_chat_template(messages(pair, response, self.system_mode, prompt),
                                                  tokenize=False, add_generation_prompt=False)

    def _ids(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _sides(self, pair: BenchPair, prompt: str | None = None) -> tuple[list[int], list[int]]:
        return self._ids(self.render(pair, pair.chosen, prompt)), self._ids(self.render(pair, pair.rejected, prompt))

    def _prompt_token_starts(self, pair: BenchPair) -> list[int]:
        """Character offset in the prompt where each of its tokens starts."""
        if not getattr(self.tokenizer, "is_fast", False):
            raise PairError(f"pair {pair.id}: too long, and cutting its prompt needs a fast tokenizer (offsets)")
        encoded = self.tokenizer(pair.prompt, add_special_tokens=False, return_offsets_mapping=True)
        return [start for start, _ in encoded["offset_mapping"]]

    def encode(self, pair: BenchPair) -> EncodedBenchPair:
        """Both sides within `max_length` tokens, cutting the prompt from the left when needed."""
        chosen, rejected = self._sides(pair)
        over = max(len(chosen), len(rejected)) - self.max_length
        if over <= 0:
            return EncodedBenchPair(pair.id, chosen, rejected, 0)
        starts = self._prompt_token_starts(pair)
        cut = 0
        while over > 0:
            if cut >= len(starts):
                raise PairError(f"pair {pair.id}: {max(len(chosen), len(rejected))} tokens with an empty prompt, over "
                                f"max_length {self.max_length}; raise max_length to score it")
            cut = min(cut + over, len(starts))
            prompt = pair.prompt[starts[cut]:] if cut < len(starts) else ""
            chosen, rejected = self._sides(pair, prompt)
            over = max(len(chosen), len(rejected)) - self.max_length
        return EncodedBenchPair(pair.id, chosen, rejected, cut)

    def encode_all(self, pairs: Sequence[BenchPair]) -> list[EncodedBenchPair]:
        """Every pair encoded; the pairs that cannot be are reported together, by id."""
        encoded, failures = [], []
        for pair in pairs:
            try:
                encoded.append(self.encode(pair))
            except PairError as error:
                failures.append(str(error))
        if failures:
            shown = "\n  ".join(failures[:20])
            more = f"\n  ... and {len(failures) - 20} more" if len(failures) > 20 else ""
            raise PairError(f"{len(failures)} of {len(pairs)} pairs cannot be scored:\n  {shown}{more}")
        return encoded
