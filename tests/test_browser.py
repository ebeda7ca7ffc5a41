"""The app in a real browser (Debian chromium via Playwright): generate a clip and play it.

Skipped when /usr/bin/chromium is not installed. Saves a screenshot to
test-artifacts/browser.png.
"""

import threading
import time
from pathlib import Path

import pytest
from conftest import running_app

from vdm_core.pipeline import DEFAULT_MODEL
from vdm_core.unet3d import WEIGHTS_NAME, UNetConfig

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking"]
TIMEOUT_MS = 90_000

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason="Debian chromium is not installed at /usr/bin/chromium "
                                       "(apt-get install chromium)")

VIDEO_READY_JS = """() => {
    const video = document.querySelector('#gen-video video');
    return video !== null && video.src !== '' && video.readyState >= 2;
}"""


@pytest.fixture(scope="module")
def app_url(tmp_path_factory, randomized_unet):
    """The app in this process, on the shipped model (or a tiny random one when none)."""
    model_dir = None
    if not (DEFAULT_MODEL / WEIGHTS_NAME).is_file():
        model_dir = tmp_path_factory.mktemp("model")
        randomized_unet(UNetConfig(base_channels=16, channel_mults=(1, 2),
                                   attn_resolutions=(8,), head_dim=8)).save_pretrained(model_dir)
    with running_app(model_dir) as url:
        yield url


@pytest.fixture(scope="module")
def page():
    """A headless chromium page."""
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser.new_page(viewport={"width": 1400, "height": 1100})
        finally:
            browser.close()


def _set_steps(page, steps: int) -> None:
    """Type a step count into the Generate tab's steps box."""
    box = page.locator("#gen-steps input[type=number]")
    box.fill(str(steps))
    box.press("Enter")


def _sampling_threads() -> list[threading.Thread]:
    """The app's sampling worker threads still running (the app runs in this process)."""
    return [t for t in threading.enumerate() if t.name == "vdm-job" and t.is_alive()]


def test_generate_in_the_browser_plays_the_video(app_url, page):
    page.goto(app_url, timeout=TIMEOUT_MS)
    page.get_by_text("a cyan circle moving up", exact=True).first.click()
    _set_steps(page, 2)
    page.locator("#gen-run").click()
    start = time.time()
    page.wait_for_function(VIDEO_READY_JS, timeout=TIMEOUT_MS)
    duration = page.evaluate("() => document.querySelector('#gen-video video').duration")
    assert duration > 0, "the generated mp4 did not load in the browser"
    assert time.time() - start < TIMEOUT_MS / 1000
    assert "2 steps" in page.locator("#status").inner_text()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "browser.png"), full_page=True)


def test_stop_button_cancels_sampling(app_url, page):
    page.goto(app_url, timeout=TIMEOUT_MS)
    _set_steps(page, 256)
    page.locator("#gen-run").click()
    page.wait_for_function(
        "() => document.querySelector('#status').innerText.includes('Denoising')",
        timeout=TIMEOUT_MS)
    page.get_by_role("button", name="Stop").first.click()
    deadline = time.time() + 30
    while _sampling_threads() and time.time() < deadline:
        time.sleep(0.2)
    assert not _sampling_threads(), "sampling went on after Stop"
    assert "step 256/256" not in page.locator("#status").inner_text()
