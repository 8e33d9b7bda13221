"""A small OpenAI-compatible chat-completions server on 127.0.0.1 for the tests.

Answers are a pure function of the request (the last user message), so two runs can be
compared. Misbehaviour is chosen per prompt by a marker in the last user message:

  MODE=429x2      first 2 attempts get 429 with Retry-After: 0
  MODE=500x1      first attempt gets 500 (also 503x1, 400, 401, quota)
  MODE=drop1      first attempt: connection closed without a response
  MODE=slow0.5    answer after 0.5 s
  MODE=truncjson  a JSON object cut off at max_tokens (finish_reason "length")
  MODE=prose      JSON wrapped in prose and a code fence
  MODE=wrong      a JSON object of the wrong shape, every time
  MODE=wrongonce  wrong shape, right after a re-ask (the request has an assistant turn)
  MODE=nostructured  400 for a body with response_format or structured_outputs (a server without them)

``hold_after`` makes the server answer that many requests and then hold every later one
until ``release()``; held requests are never answered (their connection is closed), which
lets a test kill a client while it waits, knowing exactly which prompts were answered.
"""
from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODE = re.compile(r"MODE=(429|500|503|400|401|quota|drop|slow|truncjson|prose|wrongonce|wrong|nostructured)([0-9.]*)(?:x([0-9]+))?\b")


def answer_for(prompt: str) -> str:
    """The deterministic answer text for a prompt without a MODE marker."""
    return f"answer-{hashlib.sha256(prompt.encode()).hexdigest()[:10]}"


class OpenAITestServer:
    def __init__(self, hold_after: int | None = None):
        self.bodies: list[dict] = []  # every request body received, in arrival order
        self.attempts: Counter[str] = Counter()  # per prompt: requests received
        self.answered: Counter[str] = Counter()  # per prompt: 200 answers sent
        self.hold_after = hold_after
        self._lock = threading.Lock()
        self._admitted = 0  # requests let through (decided on arrival, so concurrency cannot overshoot)
        self._released = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output clean
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(n))
                server._handle(self, body)

        class Server(ThreadingHTTPServer):
            def handle_error(self, request, client_address):  # a client that hung up is expected here
                pass

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ control
    def release(self) -> None:
        self.hold_after = None
        self._released.set()

    def close(self) -> None:
        self._released.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    @property
    def total_answered(self) -> int:
        return sum(self.answered.values())

    # ------------------------------------------------------------------ behaviour
    def _send(self, h: BaseHTTPRequestHandler, status: int, payload: dict | str, headers: dict | None = None) -> None:
        data = (payload if isinstance(payload, str) else json.dumps(payload)).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(data)
        h.wfile.flush()

    def _handle(self, h: BaseHTTPRequestHandler, body: dict) -> None:
        msgs = body["messages"]
        prompt = [m for m in msgs if m["role"] == "user"][0]["content"]
        reasked = any(m["role"] == "assistant" for m in msgs)
        with self._lock:
            self.bodies.append(body)
            self.attempts[prompt] += 1
            attempt = self.attempts[prompt]
            hold = self.hold_after is not None and self._admitted >= self.hold_after
            self._admitted += 0 if hold else 1
        if hold:
            self._released.wait(timeout=60)
            h.close_connection = True
            return  # never answered
        m = MODE.search(prompt)
        mode, arg, times = (m.group(1), m.group(2), int(m.group(3) or 1)) if m else ("", "", 0)
        err = {"error": {"message": "test failure", "type": "server_error"}}
        if mode in ("429", "500", "503") and attempt <= times:
            return self._send(h, int(mode), err, {"Retry-After": "0"} if mode == "429" else None)
        if mode == "nostructured" and ("response_format" in body or "structured_outputs" in body):
            return self._send(h, 400, {"error": {"message": "Unrecognized request argument", "type": "invalid_request_error"}})
        if mode == "400":
            return self._send(h, 400, {"error": {"message": "bad request", "type": "invalid_request_error"}})
        if mode == "401":
            return self._send(h, 401, {"error": {"message": "bad key", "type": "invalid_api_key"}})
        if mode == "quota":
            return self._send(h, 429, {"error": {"message": "You exceeded your quota", "code": "insufficient_quota"}})
        if mode == "drop" and attempt <= int(arg or 1):
            h.close_connection = True
            h.connection.close()
            return
        if mode == "slow":
            time.sleep(float(arg or 0.5))
        finish = "stop"
        payload = {"title": f"T {answer_for(prompt)}", "abstract": "A story.", "category": "news"}
        if mode == "truncjson":
            text, finish = json.dumps(payload)[:25], "length"
        elif mode == "prose":
            text = f"Sure! Here is the item:\n```json\n{json.dumps(payload)}\n```\nEnjoy."
        elif mode == "wrong" or (mode == "wrongonce" and not reasked):
            text = json.dumps({"name": "x", "tags": ["a"]})
        elif mode == "wrongonce":
            text = json.dumps(payload)
        else:
            text = answer_for(prompt)
        choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}
        if body.get("logprobs") and body.get("top_logprobs"):  # letters, the first most likely, then falling
            tops = [{"token": chr(65 + j), "logprob": -0.5 - j} for j in range(int(body["top_logprobs"]))]
            choice["logprobs"] = {"content": [{"token": "A", "logprob": -0.5, "top_logprobs": tops}]}
        resp = {"id": "cmpl-test", "object": "chat.completion", "model": body.get("model"),
                "choices": [choice],
                "usage": {"prompt_tokens": sum(len(x["content"].split()) for x in msgs),
                          "completion_tokens": len(text.split())}}
        self._send(h, 200, resp)
        with self._lock:
            self.answered[prompt] += 1
