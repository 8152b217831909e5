"""Judge backends on the real packaged model: vLLM's engine on CPU, and transformers."""

from __future__ import annotations

import pytest

from llm.backends import BACKENDS, Rejected, Sampling
from llm.judging import ORDERS, VERDICT_PATTERN, JudgeTask
from pipelines.label.voting import outcome

PAIRS = [
    {"pair_id": "p1", "prompt": "Check membership fast.", "chosen": "s = set(xs)\nprint(x in s)\n", "rejected": "print(x in xs)\n",
     "criterion": "Runtime Efficiency", "language": "Python", "fence": "python"},
    {"pair_id": "p2", "prompt": "Read a file safely.", "chosen": "with open(p) as f:\n    data = f.read()\n",
     "rejected": "data = open(p).read()\n", "criterion": "Readability and Maintainability", "language": "Python", "fence": "python"},
]


@pytest.fixture
def vllm_backend(vllm_engine):
    return vllm_engine  # the test session's one engine (tests/conftest.py)


def test_vllm_engine_judges_both_orders_with_constrained_verdicts(vllm_backend):
    task = JudgeTask()
    requests = [(pair, order) for pair in PAIRS for order in ORDERS]
    answers = vllm_backend.generate([task.format_input({**pair, "order": order}) for pair, order in requests],
                                    Sampling(n=2, max_tokens=16, seed=3, regex=VERDICT_PATTERN))
    assert len(answers) == 4 and all(len(texts) == 2 for texts in answers)
    for (pair, order), texts in zip(requests, answers):
        for text in texts:
            parsed = task.parse_output(text)
            assert parsed.fields is not None, text  # constrained decoding: always a verdict
            assert outcome(order, parsed.fields["verdict"]) in ("match", "contradiction", "tie")


def test_transformers_backend_generates_raw_texts(smollm2):
    from transformers import AutoTokenizer

    backend = BACKENDS["transformers"](smollm2)
    tokenizer = AutoTokenizer.from_pretrained(smollm2)
    conversations = [JudgeTask().format_input({**pair, "order": "chosen_first"}) for pair in PAIRS]
    seen: dict[int, list[str]] = {}
    sampled = backend.generate(conversations[:1], Sampling(n=2, max_tokens=8, seed=1), on_answer=seen.__setitem__)
    assert len(sampled) == 1 and len(sampled[0]) == 2 and seen == {0: sampled[0]}
    for text in sampled[0]:
        # Only the answer comes back: some text, at most 8 new tokens, no prompt and no chat markup.
        assert text.strip() and len(tokenizer(text, add_special_tokens=False).input_ids) <= 8, text
        assert "<|im_start|>" not in text and PAIRS[0]["prompt"] not in text, text
    assert backend.generate(conversations[:1], Sampling(n=2, max_tokens=8, seed=1)) == sampled  # seeded: the same samples again

    # Greedy decoding answers each conversation on its own: a longer budget only extends the same answer.
    short = backend.generate(conversations, Sampling(n=1, temperature=0.0, max_tokens=6), seeds=[1, 2])
    longer = backend.generate(conversations, Sampling(n=1, temperature=0.0, max_tokens=12), seeds=[3, 4])
    for (brief,), (full,) in zip(short, longer, strict=True):
        assert brief.strip() and full.startswith(brief) and len(full) > len(brief), (brief, full)
    assert short[0] != short[1]  # two different pairs, two different answers


def test_vllm_rejects_a_prompt_too_long_for_the_model_and_answers_the_rest(vllm_backend):
    task = JudgeTask()
    long_pair = {**PAIRS[0], "chosen": "x = 1\n" * 1500}  # about 4,500 tokens > max_model_len 2048
    seen: dict[int, object] = {}
    answers = vllm_backend.generate(
        [task.format_input({**long_pair, "order": "chosen_first"}), task.format_input({**PAIRS[1], "order": "chosen_first"})],
        Sampling(n=1, max_tokens=8, seed=1, regex=VERDICT_PATTERN), on_answer=lambda index, texts: seen.__setitem__(index, texts),
    )
    assert isinstance(answers[0], Rejected) and "exceeds max_model_len 2048" in answers[0].reason
    assert isinstance(answers[1], list) and len(answers[1]) == 1
    assert seen == {0: answers[0], 1: answers[1]}
