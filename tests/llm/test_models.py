"""The packaged CPU judge model is converted offline into a folder that transformers loads."""

from __future__ import annotations

import time


def test_smollm2_is_prepared_once_and_generates(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from llm.models import prepare_smollm2

    folder = prepare_smollm2(tmp_path)
    assert (folder / "config.json").is_file() and list(folder.glob("*.safetensors"))
    start = time.monotonic()
    assert prepare_smollm2(tmp_path) == folder
    assert time.monotonic() - start < 1.0  # the second call finds the folder
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "Say hi."}], tokenize=False, add_generation_prompt=True)
    assert "<|im_start|>assistant" in prompt
    inputs = tokenizer(prompt, return_tensors="pt")
    output = model.generate(**inputs, max_new_tokens=5, do_sample=False)
    assert output.shape[1] > inputs["input_ids"].shape[1]
    assert model.config.hidden_size // model.config.num_attention_heads == 64  # a head size vLLM's CPU attention supports
