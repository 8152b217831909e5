"""The `openai` backend's error paths against a scripted local HTTP server (the real `vllm serve`
run is in test_label_openai.py): retries with backoff, Retry-After, rejections, giving up."""

from __future__ import annotations

import pytest

from llm.backends import BACKENDS, BackendUnavailable, Rejected, Sampling
from tests.support.fake_openai import FakeOpenAI


@pytest.fixture
def server(faulty_judge):
    """The scripted server (tests/support/fake_openai.py), answering each choice with its seed and index."""
    FakeOpenAI.answers = [("", lambda body, index: f"[VERDICT]A[/VERDICT] seed {body['seed']} #{index}")]
    return faulty_judge


def backend(url: str, **options: object):
    return BACKENDS["openai"]("judge", base_url=url, backoff=0.01, max_backoff=0.05, **options)


CONVERSATION = [{"role": "user", "content": "A or B?"}]


def test_n_samples_in_one_request_in_choice_order_and_the_key_from_the_environment(server, monkeypatch):
    monkeypatch.setenv("JUDGE_KEY", "secret-123")
    answers = backend(server, api_key_env="JUDGE_KEY").generate([CONVERSATION] * 3, Sampling(n=2), seeds=[5, 6, 7])
    assert answers == [[f"[VERDICT]A[/VERDICT] seed {s} #0", f"[VERDICT]A[/VERDICT] seed {s} #1"] for s in (5, 6, 7)]
    assert len(FakeOpenAI.requests) == 3 and {r["body"]["n"] for r in FakeOpenAI.requests} == {2}
    assert {r["auth"] for r in FakeOpenAI.requests} == {"Bearer secret-123"}


def test_servers_without_n_get_one_request_per_sample_with_its_own_seed(server):
    (texts,) = backend(server, n_per_request=False).generate([CONVERSATION], Sampling(n=3), seeds=[10])
    assert texts == [f"[VERDICT]A[/VERDICT] seed {s} #0" for s in (10, 11, 12)]
    assert sorted(r["body"]["seed"] for r in FakeOpenAI.requests) == [10, 11, 12]


def test_429_and_5xx_are_retried_with_backoff_and_retry_after_is_honoured(server):
    FakeOpenAI.faults = ["503", ("429", {"Retry-After": "0.01"}), "500"]
    judge = backend(server, concurrency=1)
    (texts,) = judge.generate([CONVERSATION], Sampling(n=1), seeds=[1])
    assert texts == ["[VERDICT]A[/VERDICT] seed 1 #0"]
    assert judge.retries == 3 and len(FakeOpenAI.requests) == 4


def test_a_request_the_server_refuses_is_rejected_alone(server):
    FakeOpenAI.faults = ["400"]
    seen = {}
    answers = backend(server, concurrency=1).generate([CONVERSATION, CONVERSATION], Sampling(n=1), seeds=[1, 2],
                                                      on_answer=lambda i, a: seen.__setitem__(i, a))
    assert isinstance(answers[0], Rejected) and "400" in answers[0].reason
    assert answers[1] == ["[VERDICT]A[/VERDICT] seed 2 #0"] and seen == {0: answers[0], 1: answers[1]}


def test_an_auth_error_stops_the_run_and_does_not_show_the_key(server, monkeypatch):
    monkeypatch.setenv("JUDGE_KEY", "secret-123")
    FakeOpenAI.faults = ["401"]
    with pytest.raises(BackendUnavailable, match="401") as error:
        backend(server, api_key_env="JUDGE_KEY", concurrency=1).generate([CONVERSATION], Sampling(n=1))
    assert "secret-123" not in str(error.value)


def test_a_server_that_stays_down_fails_after_the_retries_naming_it():
    judge = BACKENDS["openai"]("judge", base_url="http://127.0.0.1:9/v1", backoff=0.01, max_backoff=0.02, max_retries=2, timeout=2)
    with pytest.raises(BackendUnavailable, match=r"127\.0\.0\.1:9/v1: still failing after 2 retries"):
        judge.generate([CONVERSATION], Sampling(n=1))
    assert judge.retries == 2
