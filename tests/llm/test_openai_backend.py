"""The `openai` backend's error paths against a scripted local HTTP server (the real `vllm serve`
run is in test_label_openai.py): retries with backoff, Retry-After, rejections, giving up."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from llm.backends import BACKENDS, BackendUnavailable, Rejected, Sampling


class Scripted(BaseHTTPRequestHandler):
    """Answers POST /v1/chat/completions with the next scripted (status, headers) or a completion."""

    script: list[tuple[int, dict[str, str]]] = []
    requests: list[dict] = []
    lock = threading.Lock()

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with self.lock:
            self.requests.append({"body": body, "auth": self.headers.get("Authorization")})
            status, headers = self.script.pop(0) if self.script else (200, {})
        if status == 200:
            n = body.get("n", 1)
            payload = {"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                       "choices": [{"index": i, "finish_reason": "stop",
                                    "message": {"role": "assistant", "content": f"[VERDICT]A[/VERDICT] seed {body['seed']} #{i}"}}
                                   for i in reversed(range(n))]}
        else:
            payload = {"error": {"message": f"scripted {status}", "type": "x", "code": status}}
        data = json.dumps(payload).encode()
        self.send_response(status)
        for key, value in {"Content-Type": "application/json", **headers}.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server():
    Scripted.script, Scripted.requests = [], []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Scripted)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()


def backend(url: str, **options: object):
    return BACKENDS["openai"]("judge", base_url=url, backoff=0.01, max_backoff=0.05, **options)


CONVERSATION = [{"role": "user", "content": "A or B?"}]


def test_n_samples_in_one_request_in_choice_order_and_the_key_from_the_environment(server, monkeypatch):
    monkeypatch.setenv("JUDGE_KEY", "secret-123")
    answers = backend(server, api_key_env="JUDGE_KEY").generate([CONVERSATION] * 3, Sampling(n=2), seeds=[5, 6, 7])
    assert answers == [[f"[VERDICT]A[/VERDICT] seed {s} #0", f"[VERDICT]A[/VERDICT] seed {s} #1"] for s in (5, 6, 7)]
    assert len(Scripted.requests) == 3 and {r["body"]["n"] for r in Scripted.requests} == {2}
    assert {r["auth"] for r in Scripted.requests} == {"Bearer secret-123"}


def test_servers_without_n_get_one_request_per_sample_with_its_own_seed(server):
    (texts,) = backend(server, n_per_request=False).generate([CONVERSATION], Sampling(n=3), seeds=[10])
    assert texts == [f"[VERDICT]A[/VERDICT] seed {s} #0" for s in (10, 11, 12)]
    assert sorted(r["body"]["seed"] for r in Scripted.requests) == [10, 11, 12]


def test_429_and_5xx_are_retried_with_backoff_and_retry_after_is_honoured(server):
    Scripted.script = [(503, {}), (429, {"Retry-After": "0.01"}), (500, {})]
    judge = backend(server, concurrency=1)
    (texts,) = judge.generate([CONVERSATION], Sampling(n=1), seeds=[1])
    assert texts == ["[VERDICT]A[/VERDICT] seed 1 #0"]
    assert judge.retries == 3 and len(Scripted.requests) == 4


def test_a_request_the_server_refuses_is_rejected_alone(server):
    Scripted.script = [(400, {})]
    seen = {}
    answers = backend(server, concurrency=1).generate([CONVERSATION, CONVERSATION], Sampling(n=1), seeds=[1, 2],
                                                      on_answer=lambda i, a: seen.__setitem__(i, a))
    assert isinstance(answers[0], Rejected) and "400" in answers[0].reason
    assert answers[1] == ["[VERDICT]A[/VERDICT] seed 2 #0"] and seen == {0: answers[0], 1: answers[1]}


def test_an_auth_error_stops_the_run_and_does_not_show_the_key(server, monkeypatch):
    monkeypatch.setenv("JUDGE_KEY", "secret-123")
    Scripted.script = [(401, {})]
    with pytest.raises(BackendUnavailable, match="401") as error:
        backend(server, api_key_env="JUDGE_KEY", concurrency=1).generate([CONVERSATION], Sampling(n=1))
    assert "secret-123" not in str(error.value)


def test_a_server_that_stays_down_fails_after_the_retries_naming_it():
    judge = BACKENDS["openai"]("judge", base_url="http://127.0.0.1:9/v1", backoff=0.01, max_backoff=0.02, max_retries=2, timeout=2)
    with pytest.raises(BackendUnavailable, match=r"127\.0\.0\.1:9/v1: still failing after 2 retries"):
        judge.generate([CONVERSATION], Sampling(n=1))
    assert judge.retries == 2
