"""A bounded load test of the HTTP service on loopback: a fixed number of requests from N
concurrent keep-alive clients; throughput and latency percentiles.

The client is a few lines of asyncio over raw HTTP/1.1 (keep-alive, Content-Length
bodies), so on a 2-core machine it takes little of the CPU the server needs — a general
HTTP client library costs several times more per request and would measure itself.

>>> summarize([0.001, 0.002, 0.003, 0.004], errors=0, seconds=0.5)["p50_ms"]
2.5
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import numpy as np


async def _client(host: str, port: int, paths: Sequence[str], start: int, step: int, n: int,
                  latencies: list[float], errors: list[int]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        for i in range(start, n, step):
            path = paths[i % len(paths)]
            t0 = time.perf_counter()
            writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: keep-alive\r\n\r\n".encode())
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - t0)
            if status != 200:
                errors.append(status)
    finally:
        writer.close()


async def _run(host: str, port: int, paths: Sequence[str], clients: int, requests: int) -> dict[str, Any]:
    latencies: list[float] = []
    errors: list[int] = []
    t0 = time.perf_counter()
    await asyncio.gather(*(_client(host, port, paths, c, clients, requests, latencies, errors) for c in range(clients)))
    return summarize(latencies, len(errors), time.perf_counter() - t0)


def summarize(latencies: Sequence[float], errors: int, seconds: float) -> dict[str, Any]:
    lat = np.asarray(latencies) * 1000
    return {"requests": len(lat), "errors": errors, "seconds": seconds, "req_per_s": len(lat) / seconds,
            "p50_ms": float(np.percentile(lat, 50)), "p95_ms": float(np.percentile(lat, 95)),
            "p99_ms": float(np.percentile(lat, 99)), "max_ms": float(lat.max())}


def load_test(url: str, paths: Sequence[str], clients: int, requests: int, warmup: int = 100) -> dict[str, Any]:
    """``requests`` GETs of ``paths`` (cycled) from ``clients`` concurrent connections to
    ``url`` (http://host:port), after ``warmup`` untimed ones; see `summarize`."""
    from urllib.parse import urlsplit

    u = urlsplit(url)
    if warmup:
        asyncio.run(_run(u.hostname, u.port, paths, min(clients, warmup), warmup))
    out = asyncio.run(_run(u.hostname, u.port, paths, clients, requests))
    return {"clients": clients, **out}


def recommend_paths(users: Sequence[str], k: int = 10, seed: int = 0, n: int = 10_000) -> list[str]:
    """``n`` top-k requests for users drawn uniformly (fixed seed, so runs compare)."""
    rng = np.random.default_rng(seed)
    return [f"/v1/recommend?user={users[i]}&k={k}" for i in rng.integers(len(users), size=n)]


class served:
    """``with served(["runs/sasrec", "--no-batching"]) as url:`` a `genrecsys serve` process
    on a free loopback port for the block; stopped (then killed) at the end."""

    def __init__(self, args: Sequence[str], env: dict[str, str] | None = None, timeout_s: float = 120):
        self.args, self.env, self.timeout_s = list(args), env, timeout_s

    def __enter__(self) -> str:
        import os
        import socket
        import subprocess
        import sys
        import urllib.request

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.proc = subprocess.Popen([sys.executable, "-m", "genrecsys", "serve", *self.args, "--port", str(port),
                                      "--log-level", "warning"], env={**os.environ, **(self.env or {})},
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        url = f"http://127.0.0.1:{port}"
        deadline = time.time() + self.timeout_s
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"genrecsys serve exited with {self.proc.returncode}: {self.proc.stderr.read()[-2000:]}")
            try:
                with urllib.request.urlopen(url + "/healthz", timeout=2):
                    return url
            except OSError:
                time.sleep(0.2)
        self.__exit__(None, None, None)
        raise RuntimeError(f"genrecsys serve did not answer /healthz within {self.timeout_s:.0f} s")

    def __exit__(self, *exc) -> None:
        import subprocess

        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
