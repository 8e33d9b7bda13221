"""A two-node Ray cluster on loopback (``ray start --head`` and a second ``ray start`` with
its own resources): one LLM job spread over both nodes, a worker on the second node killed
mid-job, the job run again. Every prompt is answered once across the cluster (the test
server counts) and the answers are those of a single-process run, because all actors read
and write one cache, through the cache actor on the driver's node."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from genrecsys.config import LLMConfig
from genrecsys.llm.cache import LLMCache
from genrecsys.llm.backends import make_backend
from genrecsys.llm.job import generate
from genrecsys.llm.types import Request
from openai_server import OpenAITestServer, answer_for

ray = pytest.importorskip("ray", reason='Ray is optional: pip install "genrecsys[ray]" (it is in the test extra)')
pytest.importorskip("ray.data", reason='Ray Data is missing: pip install "ray[data]"')

from genrecsys.llm.distributed import generate_on_ray  # noqa: E402


def _ray_cli(*args: str) -> subprocess.CompletedProcess:
    exe = shutil.which("ray", path=os.path.dirname(sys.executable)) or shutil.which("ray")
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=180, env=os.environ.copy())


def _wait(cond, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _reload_auth() -> None:
    """Make this process re-read RAY_AUTH_MODE and the token (Ray caches both at first use;
    the reset is what Ray's own tests do, ray._private.authentication_test_utils)."""
    from ray._raylet import AuthenticationTokenLoader, Config

    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()


@pytest.fixture(scope="module")
def two_nodes():
    if ray.is_initialized():  # another module's local Ray: this module needs its own cluster
        ray.shutdown()
    # Ray >= 2.59 turns token authentication on for a `ray start --head` cluster but not for a
    # node joining it: every process of the cluster (both nodes, this driver) must say
    # RAY_AUTH_MODE=token and hold the same token (here the default file ~/.ray/auth_token).
    saved_mode = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "token"
    token = _ray_cli("get-auth-token", "--generate")
    assert token.returncode == 0, token.stderr[-2000:]
    _reload_auth()  # this process may have read the mode already (another module's ray.init)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    common = ["--num-cpus=1", "--disable-usage-stats", "--object-store-memory=80000000"]
    head = _ray_cli("start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}", "--include-dashboard=false",
                    '--resources={"head_node": 1}', *common)
    assert head.returncode == 0, head.stderr[-2000:]
    try:
        second = _ray_cli("start", f"--address=127.0.0.1:{port}", "--node-ip-address=127.0.0.1",
                          '--resources={"second_node": 1}', *common)
        assert second.returncode == 0, second.stderr[-2000:]
        ray.init(address=f"127.0.0.1:{port}", log_to_driver=False, configure_logging=False)
        ray.data.DataContext.get_current().enable_progress_bars = False
        _wait(lambda: sum(n["Alive"] for n in ray.nodes()) == 2, 60, "two live nodes")
        yield {n["NodeID"]: ("second" if "second_node" in n["Resources"] else "head") for n in ray.nodes() if n["Alive"]}
    finally:
        ray.shutdown()
        _ray_cli("stop", "--force")
        if saved_mode is None:
            os.environ.pop("RAY_AUTH_MODE", None)
        else:
            os.environ["RAY_AUTH_MODE"] = saved_mode
        _reload_auth()


def _pool_actors() -> list[dict]:
    from ray._private import state  # the GCS actor table: needs no dashboard

    return [a for a in state.actors().values() if a["State"] == "ALIVE" and "MapWorker" in a["ActorClassName"]]


def test_a_job_over_two_nodes_survives_a_killed_worker_and_pays_each_prompt_once(two_nodes, tmp_path):
    reqs = [Request.chat(f"cluster prompt {i}", task="t") for i in range(24)]
    cache_path = tmp_path / "cache.sqlite"
    server = OpenAITestServer(hold_after=10)  # answers 10, then holds every later request unanswered
    cfg = LLMConfig(backend="openai", base_url=server.url, model="test-model", concurrency=2, timeout_s=30)
    done: dict = {}

    def job() -> None:
        try:
            done["out"] = generate_on_ray(reqs, cfg, cache_path, num_workers=2, batch_size=4, num_cpus_per_worker=1)
        except Exception as exc:  # noqa: BLE001 - the killed worker may fail the first run: asserted below
            done["error"] = exc

    try:
        runner = threading.Thread(target=job, daemon=True)
        runner.start()
        _wait(lambda: server.total_answered == 10 and len(server.bodies) > 10, 120, "10 answers and held requests")
        _wait(lambda: cache_path.exists() and len(LLMCache(cache_path)) == 10, 30, "the 10 answers committed")
        # the pool spread over both nodes (the second actor may still be starting: wait for it)
        _wait(lambda: {two_nodes[a["Address"]["NodeID"]] for a in _pool_actors()} == {"head", "second"}, 60,
              "a pool actor on each node")
        actors = _pool_actors()
        victim = next(a for a in actors if two_nodes[a["Address"]["NodeID"]] == "second")
        os.kill(victim["Pid"], signal.SIGKILL)  # a worker on the second node dies mid-batch
        _wait(lambda: victim["ActorID"] not in {a["ActorID"] for a in _pool_actors()}, 30, "the worker's death")
        server.release()
        runner.join(timeout=180)
        assert not runner.is_alive()
        first_run_completed = "out" in done  # Ray may have retried the lost batch on a new actor
        out, stats = generate_on_ray(reqs, cfg, cache_path, num_workers=2, batch_size=4, num_cpus_per_worker=1)
    finally:
        server.close()

    assert [c.text for c in out] == [answer_for(f"cluster prompt {i}") for i in range(24)] and all(c.ok for c in out)
    # every prompt answered exactly once across both nodes, the kill and the rerun
    assert sorted(server.answered.values()) == [1] * 24, server.answered
    assert len(LLMCache(cache_path)) == 24
    if first_run_completed:
        assert stats.total.cache_hits == 24 and stats.total.backend_calls == 0
    else:
        assert stats.total.cache_hits >= 10, stats.total

    # the same answers as one process on its own, with its own cache
    local_server = OpenAITestServer()
    try:
        backend = make_backend(LLMConfig(backend="openai", base_url=local_server.url, model="test-model"))
        local, _ = generate(reqs, backend, LLMCache(tmp_path / "local.sqlite"))
        backend.close()
    finally:
        local_server.close()
    assert [(c.text, c.ok) for c in out] == [(c.text, c.ok) for c in local]
