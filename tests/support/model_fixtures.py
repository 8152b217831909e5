"""A tiny causal language model and a tokenizer trained here, for trainer and evaluator tests (no hub)."""

from __future__ import annotations

from pathlib import Path

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


def tiny_tokenizer(directory: Path):  # type: ignore[no-untyped-def]
    """A byte-level BPE tokenizer (vocabulary 400) trained on a few lines, with a ChatML template."""
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


def tiny_causal_lm(directory: Path, seed: int = 0) -> Path:
    """A 2-layer Llama with random weights (hidden size 32) and the tiny tokenizer, saved in `directory`."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = tiny_tokenizer(directory)
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                         bos_token_id=tokenizer.bos_token_id, tie_word_embeddings=True)
    LlamaForCausalLM(config).save_pretrained(directory)
    return directory
