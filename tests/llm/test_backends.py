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
    backend = BACKENDS["transformers"](smollm2)
    (texts,) = backend.generate([JudgeTask().format_input({**PAIRS[0], "order": "chosen_first"})], Sampling(n=2, max_tokens=8, seed=1))
    assert len(texts) == 2 and all(isinstance(t, str) for t in texts)


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
