"""Fault tests against a real `genrecsys serve` process on loopback."""
from __future__ import annotations

import shutil
import signal
import time

import pytest
from serving import FAKE_TITLE, SLOW_STARTED, Server, chat_reply, train_tiny


@pytest.fixture(scope="module")
def run_root(block_dataset_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("served")
    train_tiny(block_dataset_dir, root / "sasrec")
    return root


@pytest.fixture(scope="module")
def llm_server():
    from augment.augmentdata import ScriptedServer

    s = ScriptedServer(chat_reply)
    yield s
    s.close()


def serve_args(run_root, llm_server, tiny_plm_dir, *extra):
    return ["serve", str(run_root / "sasrec"), "--root", str(run_root), "--chat-db", str(run_root / "chat.sqlite"),
            "--chat-encoder", str(tiny_plm_dir), "--llm-backend", "openai", "--llm-base-url", llm_server.url,
            "--llm-model", "gpt-4o-mini", "--llm-cache", str(run_root / "llm.sqlite"), *extra]


@pytest.fixture(scope="module")
def server(run_root, llm_server, tiny_plm_dir, ml100k_cache_dir):
    s = Server(serve_args(run_root, llm_server, tiny_plm_dir, "--max-body-bytes", "4096"),
               env={"GENRECSYS_CACHE": str(ml100k_cache_dir)}, cwd=run_root)
    yield s
    s.stop()


def test_recommend_answers_with_titles_and_the_metrics_count_it(server):
    status, body = server.get("/v1/recommend?user=u0&k=5")
    assert status == 200 and len(body["items"]) == 5 and body["items"][0]["title"].startswith("Item ")
    assert body["explanation"] is None  # not a RELAND run
    status, many = server.post("/v1/recommend", {"users": ["u0", "u1"], "k": 3})
    assert status == 200 and [r["user"] for r in many["results"]] == ["u0", "u1"]
    ids = [it["id"] for it in many["results"][0]["items"]]
    assert ids == [it["id"] for it in body["items"][:3]]  # batched or not, the same ranking
    assert [it["score"] for it in many["results"][0]["items"]] == pytest.approx([it["score"] for it in body["items"][:3]],
                                                                             abs=1e-4)
    assert body["items"][0]["genres"] in (["g0"], ["g1"])  # the category column when there are no genres
    status, anon = server.post("/v1/recommend", {"items": ["i1", "i2"], "k": 3})
    assert status == 200 and anon["results"][0]["rule"] == "model" and len(anon["results"][0]["items"]) == 3
    status, sim = server.get("/v1/items/i3/similar?k=4")
    assert status == 200 and len(sim["items"]) == 4 and sim["item"]["id"] == "i3"
    _, metrics = server.get("/metrics")
    assert 'genrecsys_requests_total{endpoint="/v1/recommend",status="200"}' in metrics
    assert "genrecsys_batch_size_bucket" in metrics and "genrecsys_request_seconds_bucket" in metrics
    assert 'genrecsys_model_info{model="sasrec",run="sasrec"' in metrics


@pytest.mark.parametrize("body, field", [
    ('{"users": ["u0"], "k": 2', "invalid JSON"),
    ('{"users": "u0"}', "body.users"),
    ('{"users": ["u0"], "k": "many"}', "body.k"),
    ('{"users": ["u0"], "items": ["i1"]}', "exactly one of"),
])
def test_malformed_bodies_get_422_naming_the_field(server, body, field):
    status, reply = server.post("/v1/recommend", body)
    assert status == 422 and field in reply["detail"]


def test_unknown_user_item_or_run_is_404_with_the_id_and_bad_k_is_422(server):
    status, reply = server.get("/v1/recommend?user=nobody-42")
    assert status == 404 and "nobody-42" in reply["detail"]
    status, reply = server.post("/v1/recommend", {"items": ["i1", "zz9"]})
    assert status == 404 and "zz9" in reply["detail"]
    status, reply = server.get("/v1/recommend?user=u0&run=other")
    assert status == 404 and "other" in reply["detail"]
    for k in ("0", "-3", "1000000", "ten"):
        status, reply = server.get(f"/v1/recommend?user=u0&k={k}")
        assert status == 422 and reply["detail"].startswith("query.k")


def test_a_body_over_the_limit_is_413_before_it_is_parsed(server):
    status, reply = server.post("/v1/recommend", '{"users": [' + ",".join(['"u0"'] * 2000) + "]}")
    assert status == 413 and "4096" in reply["detail"]


def test_reload_of_a_corrupt_run_leaves_the_old_model_answering(server, run_root):
    bad = run_root / "corrupt"
    shutil.copytree(run_root / "sasrec", bad)
    (bad / "model.pt").write_bytes(b"\x00garbage")
    _, before = server.get("/v1/recommend?user=u1&k=3")
    status, reply = server.post("/admin/reload", {"run": "sasrec", "path": "corrupt"})
    assert status == 409 and "still serving" in reply["detail"]
    status, after = server.get("/v1/recommend?user=u1&k=3")
    assert status == 200 and after == before
    status, reply = server.post("/admin/reload", {"path": "/etc"})
    assert status == 409 and "outside the runs root" in reply["detail"]
    status, reply = server.post("/admin/reload", {})  # the same run again, from its directory
    assert status == 200 and reply["reloaded"]["sasrec"] == before["version"]
    _, metrics = server.get("/metrics")
    assert 'genrecsys_reloads_total{outcome="failed",run="sasrec"} 1.0' in metrics


def test_chat_recommends_only_catalog_items_and_counts_what_it_dropped(server):
    status, r = server.post("/v1/chat", {"message": "I loved Item 3 (group 0), more like it please", "k": 3})
    assert status == 200 and r["reply"] == "You might enjoy these."
    assert [m["id"] for m in r["mentioned"]] == ["i3"] and r["dropped"] == 1 and r["parsed"]
    assert 1 <= len(r["items"]) <= 3 and all(it["title"].startswith("Item ") for it in r["items"])
    assert FAKE_TITLE not in [it["title"] for it in r["items"]] and "i3" not in [it["id"] for it in r["items"]]
    status, again = server.post("/v1/chat", {"message": "and something else?", "conversation": r["conversation"]})
    assert status == 200 and [m["id"] for m in again["liked"]] == ["i3"]
    status, conv = server.get(f"/v1/chat/{r['conversation']}")
    assert status == 200 and [m["role"] for m in conv["messages"]] == ["user", "assistant"] * 2
    status, reply = server.post("/v1/chat", {"message": "hi", "conversation": "no-such-id"})
    assert status == 404 and "no-such-id" in reply["detail"]


def test_sigkill_mid_chat_keeps_the_conversation_and_a_restart_serves_it(run_root, llm_server, tiny_plm_dir,
                                                                          ml100k_cache_dir):
    import threading

    env = {"GENRECSYS_CACHE": str(ml100k_cache_dir)}
    s = Server(serve_args(run_root, llm_server, tiny_plm_dir), env=env, cwd=run_root)
    try:
        _, first = s.post("/v1/chat", {"message": "Item 5 (group 0) was great", "user": "u2"})
        cid = first["conversation"]
        def slow_turn():
            try:
                s.post("/v1/chat", {"message": "more please SLOW=30", "conversation": cid}, timeout=60)
            except OSError:  # the server is killed under it: no answer is the point
                pass

        t = threading.Thread(target=slow_turn, daemon=True)
        t.start()
        deadline = time.time() + 30
        while not any("SLOW=30" in prompt for prompt in SLOW_STARTED):
            assert time.time() < deadline, "the slow turn never reached the LLM"
            time.sleep(0.1)
        s.kill()  # SIGKILL while the turn waits for its LLM answer
    finally:
        s.kill()
    s2 = Server(serve_args(run_root, llm_server, tiny_plm_dir), env=env, cwd=run_root)
    try:
        status, conv = s2.get(f"/v1/chat/{cid}")
        assert status == 200 and conv["user"] == "u2"
        assert [(m["role"], m["text"]) for m in conv["messages"]][:2] == [("user", "Item 5 (group 0) was great"),
                                                                          ("assistant", first["reply"])]
        assert conv["messages"][2] == {"role": "user", "text": "more please SLOW=30", "items": []}
        assert len(conv["messages"]) == 3  # the killed turn's reply was never written
        status, r = s2.post("/v1/chat", {"message": "ok, anything?", "conversation": cid})
        assert status == 200 and r["liked"][0]["id"] == "i5"
    finally:
        s2.stop()


def test_sighup_reloads_every_run(run_root, llm_server, tiny_plm_dir, ml100k_cache_dir, block_dataset_dir):
    s = Server(serve_args(run_root, llm_server, tiny_plm_dir), env={"GENRECSYS_CACHE": str(ml100k_cache_dir)},
               cwd=run_root)
    try:
        _, health = s.get("/healthz")
        train_tiny(block_dataset_dir, run_root / "retrained", epochs=1, embedding_size=16)
        shutil.copy(run_root / "retrained" / "model.pt", run_root / "sasrec" / "model.pt")
        shutil.copy(run_root / "retrained" / "config.yaml", run_root / "sasrec" / "config.yaml")
        s.signal(signal.SIGHUP)
        deadline = time.time() + 30
        while s.get("/healthz")[1]["runs"]["sasrec"] == health["runs"]["sasrec"]:
            assert time.time() < deadline, "SIGHUP did not reload"
            time.sleep(0.2)
        assert s.get("/v1/recommend?user=u0&k=2")[0] == 200
    finally:
        s.stop()


def test_a_wrong_or_missing_api_key_is_401_and_the_right_one_passes(run_root, llm_server, tiny_plm_dir,
                                                                     ml100k_cache_dir):
    s = Server(serve_args(run_root, llm_server, tiny_plm_dir),
               env={"GENRECSYS_CACHE": str(ml100k_cache_dir), "GENRECSYS_API_KEY": "s3cret-key"}, cwd=run_root)
    try:
        assert s.get("/v1/recommend?user=u0")[0] == 401
        assert s.get("/v1/recommend?user=u0", headers={"Authorization": "Bearer s3cret-kex"})[0] == 401
        assert s.post("/admin/reload", {}, headers={"X-API-Key": "wrong"})[0] == 401
        assert s.get("/v1/recommend?user=u0", headers={"Authorization": "Bearer s3cret-key"})[0] == 200
        assert s.get("/v1/recommend?user=u0", headers={"X-API-Key": "s3cret-key"})[0] == 200
        assert s.get("/healthz")[0] == 200  # liveness stays open
    finally:
        s.stop()


def test_the_chat_command_talks_in_the_terminal_and_resumes_a_conversation(run_root, llm_server, tiny_plm_dir,
                                                                           ml100k_cache_dir):
    import os
    import re
    import subprocess
    import sys

    args = [sys.executable, "-m", "genrecsys", "chat", str(run_root / "sasrec"), "--chat-db",
            str(run_root / "cli-chat.sqlite"), "--chat-encoder", str(tiny_plm_dir), "--llm-backend", "openai",
            "--llm-base-url", llm_server.url, "--llm-model", "gpt-4o-mini", "--llm-cache", str(run_root / "llm.sqlite"),
            "-k", "2"]
    env = {**os.environ, "GENRECSYS_CACHE": str(ml100k_cache_dir)}
    out = subprocess.run(args, check=False, input="I liked Item 7 (group 0)\n\n", capture_output=True, text=True, env=env,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert "bot> You might enjoy these." in out.stdout and "1. Item " in out.stdout and FAKE_TITLE not in out.stdout
    cid = re.search(r"--conversation ([0-9a-f]+)", out.stdout).group(1)
    again = subprocess.run([*args, "--conversation", cid], check=False, input="more?\n", capture_output=True, text=True, env=env,
                           timeout=120)
    assert again.returncode == 0 and f"conversation {cid}" in again.stdout
