"""The web page in a real headless browser (Debian's chromium + chromium-driver, driven by
selenium) against a real `genrecsys serve` of a RELAND SASRec run on ML-100K.

Skipped where no chromium is installed, unless GENRECSYS_REQUIRE_BROWSER=1 (CI sets it:
.ci/run installs the browser, so a missing one fails there instead of passing silently).
"""
from __future__ import annotations

import os
import shutil

import pytest
from serving import FAKE_TITLE, Server, reland_and_chat_reply

from genrecsys.config import DataConfig, ExperimentConfig, LLMConfig, RelandConfig, TrainConfig

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")


def _browser():
    if not (CHROMIUM and DRIVER):
        if os.environ.get("GENRECSYS_REQUIRE_BROWSER") == "1":
            pytest.fail("GENRECSYS_REQUIRE_BROWSER=1 but chromium / chromedriver are not installed")
        pytest.skip("no chromium + chromedriver (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service as ChromeService

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900"):
        opts.add_argument(a)
    return webdriver.Chrome(service=ChromeService(DRIVER), options=opts)  # explicit driver: nothing downloaded


@pytest.mark.integration
def test_page_shows_top10_with_explanation_and_chat_names_only_catalog_items(ml100k_cache_dir, minilm, tmp_path):
    from augment.augmentdata import ScriptedServer
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    from genrecsys.experiment import run_experiment

    driver = _browser()
    llm_server = ScriptedServer(reland_and_chat_reply)
    server = None
    try:
        llm = LLMConfig(backend="openai", base_url=llm_server.url, model="gpt-4o-mini", cache=str(tmp_path / "llm.sqlite"))
        run = tmp_path / "runs" / "reland-sasrec"
        cfg = ExperimentConfig(model="sasrec", data=DataConfig(dataset="ml-100k"),
                               train=TrainConfig(epochs=1, threads=1, progress=False),
                               reland=RelandConfig(seed_fraction=6, encoder_epochs=2, text_encoder=minilm, llm=llm))
        run_experiment(cfg, run, cache_dir=ml100k_cache_dir)
        server = Server(["serve", str(run), "--chat-encoder", minilm, "--chat-db", str(tmp_path / "chat.sqlite"),
                         "--llm-backend", "openai", "--llm-base-url", llm_server.url, "--llm-model", "gpt-4o-mini",
                         "--llm-cache", str(tmp_path / "llm.sqlite")],
                        env={"GENRECSYS_CACHE": str(ml100k_cache_dir)}, cwd=tmp_path)
        _, catalog = server.get("/v1/items?q=&limit=100")  # a sanity handle on titles; the full check is below

        driver.get(server.url + "/")
        wait = WebDriverWait(driver, 60)
        wait.until(lambda d: "items" in d.find_element(By.ID, "run-info").text)
        driver.find_element(By.ID, "user").send_keys("196")
        driver.find_element(By.ID, "go-user").click()
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#results li.rec")) == 10)
        titles = [e.find_element(By.CLASS_NAME, "title").text for e in
                  driver.find_elements(By.CSS_SELECTOR, "#results li.rec")]
        assert all(titles) and len(set(titles)) == 10
        _, api = server.get("/v1/recommend?user=196&k=10")
        assert titles == [it["title"] for it in api["items"]]
        why = wait.until(ec.visibility_of_element_located((By.ID, "explanation")))
        assert "character-driven dramas" in why.text and api["explanation"]["seed_user"] in why.text

        box = driver.find_element(By.ID, "chat-input")
        box.send_keys("I loved Fargo, something like it?")
        driver.find_element(By.ID, "chat-send").click()
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#chat-log .chat-item"))
        reply = driver.find_element(By.CSS_SELECTOR, "#chat-log .reply")
        named = [(e.get_attribute("data-item"), e.text) for e in driver.find_elements(By.CSS_SELECTOR, ".chat-item")]
        assert reply.text.startswith("You might enjoy these.") and FAKE_TITLE not in reply.text
        for item_id, title in named:  # every named item is a catalog item, under its catalog title
            status, sim = server.get(f"/v1/items/{item_id}/similar?k=1")
            assert status == 200 and sim["item"]["title"] == title
        assert catalog["items"]
        shot = tmp_path / "serve-page.png"
        driver.save_screenshot(str(shot))
        assert shot.stat().st_size > 10_000
    finally:
        driver.quit()
        if server is not None:
            server.stop()
        llm_server.close()
