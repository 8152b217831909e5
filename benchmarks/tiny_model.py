"""A tokenizer trained here and a random Llama, for the trainer benchmark and tests (no hub)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIAL = ["<|pad|>", "<|endoftext|>", "<|im_start|>", "<|im_end|>"]

TEXTS = [
    "def mean(xs):\n    return sum(xs) / len(xs) if xs else 0.0\n",
    "for (int i = 0; i < n; i++) { total += a[i]; }\n",
    "func add(a int, b int) int { return a + b }\n",
    "Write a function that returns the mean of a list. Prefer the faster and safer response.",
    "You review code. Prefer the response whose code is better in runtime efficiency.",
    "class Stack:\n    def push(self, x):\n        self.items.append(x)\n",
] * 20


def tiny_tokenizer(directory: Path) -> Any:
    """A byte-level BPE tokenizer (vocabulary 400) trained on a few lines, with a ChatML template, saved in `directory`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.train_from_iterator(TEXTS, trainers.BpeTrainer(vocab_size=400, special_tokens=SPECIAL,
                                                             initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<|pad|>", eos_token="<|im_end|>",
                                   bos_token="<|endoftext|>", unk_token=None)
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(directory)
    return fast


def random_llama(directory: Path, hidden: int = 32, layers: int = 2, heads: int = 4, max_length: int = 1024,
                 seed: int = 0) -> Path:
    """A Llama with random weights (2 layers of hidden size 32 by default) and the tiny tokenizer, saved in `directory`."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = tiny_tokenizer(directory)
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=hidden * 2, num_hidden_layers=layers,
                         num_attention_heads=heads, num_key_value_heads=max(1, heads // 2),
                         max_position_embeddings=max(1024, max_length), pad_token_id=tokenizer.pad_token_id,
                         eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id, tie_word_embeddings=True)
    LlamaForCausalLM(config).save_pretrained(directory)
    return directory
