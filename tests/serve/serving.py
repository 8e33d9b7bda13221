"""Helpers of the serving tests: tiny trained runs and a real `genrecsys serve` process."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from genrecsys.config import DataConfig, ExperimentConfig, TrainConfig
from genrecsys.experiment import run_experiment


def train_tiny(dataset_dir: Path, out: Path, model: str = "sasrec", epochs: int = 2, **params) -> Path:
    cfg = ExperimentConfig(model=model, model_params=params, data=DataConfig(dataset=str(dataset_dir)),
                           train=TrainConfig(progress=False, epochs=epochs, lr=0.01))
    run_experiment(cfg, out)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`python -m genrecsys serve ...` on a free loopback port, as a user would start it."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None, cwd: Path | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(Path(cwd or ".") / f"serve-{self.port}.log", "w") if cwd else subprocess.DEVNULL  # noqa: SIM115 - the process's log, closed by stop()/kill()
        self.proc = subprocess.Popen([sys.executable, "-m", "genrecsys", *args[:1], *args[1:], "--port", str(self.port),
                                      "--log-level", "warning"],
                                     env={**os.environ, **(env or {})}, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 120
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}")
            try:
                if self.get("/healthz")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError("server did not come up in 120 s")

    def request(self, method: str, path: str, body: bytes | str | dict | None = None,
                headers: dict[str, str] | None = None, timeout: float = 60) -> tuple[int, dict | str]:
        data = json.dumps(body).encode() if isinstance(body, dict) else body.encode() if isinstance(body, str) else body
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"content-type": "application/json", **(headers or {})})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                raw, status = r.read().decode(), r.status
        except urllib.error.HTTPError as e:
            raw, status = e.read().decode(), e.code
        try:
            return status, json.loads(raw)
        except json.JSONDecodeError:
            return status, raw

    def get(self, path: str, **kw):
        return self.request("GET", path, **kw)

    def post(self, path: str, body=None, **kw):
        return self.request("POST", path, body if body is not None else b"", **kw)

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        if self.log is not subprocess.DEVNULL:
            self.log.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        self.kill()


FAKE_TITLE = "Not A Real Movie (2099)"
SLOW_STARTED: list[str] = []  # prompts of slow chat turns, appended when their wait begins


def chat_reply(prompt: str) -> str | None:
    """A scripted LLM for chat turns: picks the first two candidates and adds a title that is
    in no catalog (which the chat must drop and count); "SLOW=s" in the message delays it."""
    import re

    if "Candidate items:" not in prompt:
        return None
    slow = re.search(r"SLOW=([0-9.]+)", prompt)
    if slow:
        SLOW_STARTED.append(prompt)  # (the server records a request's body only after answering it)
        time.sleep(float(slow.group(1)))
    block = prompt.split("Candidate items:", 1)[1]
    titles = re.findall(r"^\d+\. (.+)$", block, flags=re.MULTILINE)
    return json.dumps({"reply": "You might enjoy these.", "items": titles[:2] + [FAKE_TITLE]})


def reland_and_chat_reply(prompt: str) -> str | None:
    """RELAND CoT answers for the reasoning pool, chat turns as `chat_reply`."""
    if "Step 1: one sentence" in prompt:
        return ("Step 1: This user enjoys character-driven dramas and classic comedies.\n"
                "Step 2:\nCategories: Drama, Comedy\nItems:\n1. Fargo (1996)\n2. Casablanca (1942)")
    return chat_reply(prompt)
