"""One scripted OpenAI-compatible server for the tests of the `openai` backend and of the stages that use it
(the judge of `label`, the synthesis tasks of `synthesize`); the real `vllm serve` is tests/support/vllm_server.py."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

VERDICT = "[VERDICT]A[/VERDICT]"
SLOW_SECONDS = 1.5  # a "slow" answer: later than the 1 s timeout the tests give their clients

Answer = str | Callable[[dict[str, Any], int], str]  # a text, or (request body, choice index) -> text


class FakeOpenAI(BaseHTTPRequestHandler):
    """POST /v1/chat/completions: `n` choices (sent in reverse index order), unless the script says otherwise.

    `answers`: (pattern, answer) rules; the first pattern found in the prompt (the messages' text joined by
    spaces) gives every choice's text, VERDICT when none matches. `faults` are taken one per request
    (refused pairs excepted): an HTTP status ("500", "429", or ("429", {"Retry-After": "0.01"}) with
    headers), "malformed" (not JSON), "truncated" (half a body, then the connection closes), "no_choices",
    "few_choices", "html", "slow". `refuse`: pairs (named in the prompt as "Task <id>.") answered 400.
    `down_after`: that many completions, then 503 for ever. `echo_auth`: error bodies repeat the
    Authorization header. `served`: (pair, seed) of every completion answered; `requests`: the body and
    Authorization header of every request received.
    """

    answers: list[tuple[str, Answer]] = []
    faults: list[str | tuple[str, dict[str, str]]] = []
    refuse: set[str] = set()
    down_after: int | None = None
    echo_auth = False
    served: list[tuple[str, int]] = []
    requests: list[dict[str, Any]] = []
    lock = threading.Lock()

    @classmethod
    def reset(cls) -> None:
        cls.answers, cls.faults, cls.refuse, cls.down_after, cls.echo_auth = [], [], set(), None, False
        cls.served, cls.requests = [], []

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        prompt = " ".join(message["content"] for message in body["messages"])
        found = re.search(r"Task (\w+)\.", prompt)
        pair = found.group(1) if found else "?"
        headers: dict[str, str] = {}
        with self.lock:
            self.requests.append({"body": body, "auth": self.headers.get("Authorization")})
            if pair in self.refuse:
                fault = "400"
            elif self.down_after is not None and len(self.served) >= self.down_after:
                fault = "503"
            else:
                fault = self.faults.pop(0) if self.faults else "ok"
                if isinstance(fault, tuple):
                    fault, headers = fault
            if fault in ("ok", "slow"):
                self.served.append((pair, body.get("seed")))
            answer = next((text for pattern, text in self.answers if re.search(pattern, prompt)), VERDICT)
        if fault == "slow":
            time.sleep(SLOW_SECONDS)
        n = body.get("n", 1)
        completion = {"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                      "choices": [{"index": i, "finish_reason": "stop",
                                   "message": {"role": "assistant", "content": answer if isinstance(answer, str) else answer(body, i)}}
                                  for i in reversed(range(n - 1 if fault == "few_choices" else n))]}
        status, content_type, data = 200, "application/json", json.dumps(completion).encode()
        if fault.isdigit():
            echo = f" (you sent {self.headers.get('Authorization')})" if self.echo_auth else ""
            status, data = int(fault), json.dumps({"error": {"message": f"scripted {fault}{echo}", "code": int(fault)}}).encode()
        elif fault == "malformed":
            data = b'{"id": "x", "choices": [{"index": 0, "message": '
        elif fault == "no_choices":
            data = b'{"id": "x", "object": "chat.completion"}'
        elif fault == "html":
            content_type, data = "text/html", b"<html><body>502 Bad Gateway</body></html>"
        self.send_response(status)
        for key, value in {"Content-Type": content_type, **headers}.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[: len(data) // 2] if fault == "truncated" else data)
        if fault == "truncated":
            self.close_connection = True

    def log_message(self, *args: object) -> None:
        pass


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that timed out and left: the slow handler's late write fails, as it should


@contextmanager
def serving() -> Iterator[str]:
    """A FakeOpenAI with an empty script on a free local port; yields its /v1 address."""
    FakeOpenAI.reset()
    httpd = QuietServer(("127.0.0.1", 0), FakeOpenAI)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    finally:
        httpd.shutdown()
        httpd.server_close()
