"""The web page in a real headless chromium, driven by selenium through the system chromedriver, against a real
`python -m service` on the committed default models with an inference token set.

Each view is used as a person would (draw or upload, type, pick, click) and what the page shows is asserted.
Screenshots of each view are kept under pytest's tmp dir (the path is printed); with AXON_UI_SCREENSHOTS=docs/ui
they are also written there (the README's pictures).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.live_server import ROOT, live_server

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install '.[dev]')")
if CHROMIUM is None or CHROMEDRIVER is None:
    pytest.skip(
        "no chromium/chromedriver on this machine (Debian: apt-get install chromium chromium-driver); "
        "tests/service/test_ui.py checks the page without a browser",
        allow_module_level=True,
    )

from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

TOKEN = "ui-test-token"
WAIT_S = 60  # explanations on a 2-core machine shared with other work take seconds, not minutes


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("ui-server") / "server.log"
    with live_server(log, AXON_AUTH__INFERENCE_TOKEN=TOKEN, AXON_VALIDATE_MODELS="false") as url:
        yield url


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("ui-screenshots")
    print(f"\nscreenshots of the web page: {folder}")
    copies = os.environ.get("AXON_UI_SCREENSHOTS")
    return [folder, *([ROOT / copies] if copies else [])]


@pytest.fixture
def browser(server: str) -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000"):
        options.add_argument(flag)
    # The Service path is explicit, so selenium-manager never looks for (or downloads) a driver.
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        driver.get(f"{server}/ui/")
        wait(driver).until(lambda d: d.execute_script("return document.body.dataset.ready === 'true'"))
        yield driver
    finally:
        driver.quit()


def wait(driver: WebDriver) -> WebDriverWait:
    return WebDriverWait(driver, WAIT_S, poll_frequency=0.1)


def use_token(driver: WebDriver) -> None:
    field = driver.find_element(By.ID, "token")
    field.clear()
    field.send_keys(TOKEN)
    driver.find_element(By.CSS_SELECTOR, "#token-form button").click()
    wait(driver).until(lambda d: d.find_element(By.ID, "token-state").text == "token set")
    # The model pickers fill once the token is accepted.
    wait(driver).until(lambda d: len(Select(d.find_element(By.ID, "text-model")).options) > 1)


def text_of(driver: WebDriver, element_id: str) -> str:
    return driver.find_element(By.ID, element_id).text


def screenshot(driver: WebDriver, shots: list[Path], name: str) -> None:
    for folder in shots:
        folder.mkdir(parents=True, exist_ok=True)
        assert driver.save_screenshot(str(folder / f"{name}.png"))


def open_view(driver: WebDriver, view: str) -> None:
    driver.find_element(By.CSS_SELECTOR, f"#tabs button[data-view={view}]").click()
    assert driver.find_element(By.ID, f"view-{view}").is_displayed()


def test_without_the_token_the_page_says_so(browser: WebDriver) -> None:
    status = text_of(browser, "vision-status")
    assert status.startswith("401:") and "inference token" in status


def test_an_uploaded_digit_is_classified_with_its_saliency(browser: WebDriver, shots: list[Path]) -> None:
    use_token(browser)
    browser.find_element(By.ID, "vision-file").send_keys(str(ROOT / "examples" / "digit.png"))
    browser.find_element(By.ID, "vision-submit").click()
    wait(browser).until(lambda d: d.find_element(By.ID, "vision-saliency").get_attribute("data-cells"))
    assert text_of(browser, "vision-label") == "2"  # examples/digit.png is a handwritten 2
    assert len(browser.find_elements(By.CSS_SELECTOR, "#vision-topk .bar")) == 3
    assert browser.find_element(By.ID, "vision-saliency").get_attribute("data-cells") == str(28 * 28)
    assert 'saliency of "2"' in text_of(browser, "vision-passes")
    # The overlay is really painted: some of its pixels are not transparent.
    painted = browser.execute_script(
        "const c = document.getElementById('vision-saliency');"
        "const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        "let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n;"
    )
    assert painted > 1000
    screenshot(browser, shots, "vision")


def test_a_drawn_digit_is_classified(browser: WebDriver) -> None:
    use_token(browser)
    canvas = browser.find_element(By.ID, "draw")
    # A vertical stroke down the middle of the canvas: a 1.
    ActionChains(browser).move_to_element_with_offset(canvas, 0, -90).click_and_hold().move_by_offset(
        0, 60
    ).move_by_offset(0, 60).move_by_offset(0, 60).release().perform()
    browser.find_element(By.ID, "vision-submit").click()
    wait(browser).until(lambda d: d.find_element(By.ID, "vision-saliency").get_attribute("data-cells"))
    assert text_of(browser, "vision-label") == "1"


def test_a_message_is_classified_with_its_words_highlighted(browser: WebDriver, shots: list[Path]) -> None:
    use_token(browser)
    open_view(browser, "text")
    browser.find_element(By.ID, "text-submit").click()  # the spam example the page starts with
    wait(browser).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#text-tokens .tok"))
    assert text_of(browser, "text-label") == "spam"
    tokens = browser.find_elements(By.CSS_SELECTOR, "#text-tokens .tok")
    words = [t.text for t in tokens]
    assert "WINNER" in words and "claim" in words
    contributions = [float(t.get_attribute("data-contribution")) for t in tokens]
    strongest = tokens[max(range(len(tokens)), key=lambda i: contributions[i])]
    assert max(contributions) > 0 and "rgba(196, 50, 10" in strongest.value_of_css_property("background-color")
    # The highlighted text is the original text, character for character.
    assert text_of(browser, "text-tokens") == browser.find_element(By.ID, "text-input").get_attribute("value")
    screenshot(browser, shots, "text")

    Select(browser.find_element(By.ID, "text-model")).select_by_value("sentiment-gru")
    box = browser.find_element(By.ID, "text-input")
    box.clear()
    box.send_keys("Great phone, the battery lasts for days and I love it.")
    browser.find_element(By.ID, "text-submit").click()
    wait(browser).until(lambda d: "sentiment-gru" in d.find_element(By.ID, "text-score").text)
    wait(browser).until(lambda d: "love" in [t.text for t in d.find_elements(By.CSS_SELECTOR, "#text-tokens .tok")])
    assert text_of(browser, "text-label") == "positive"


def test_a_series_shows_its_flagged_segments_on_a_plot(browser: WebDriver, shots: list[Path]) -> None:
    use_token(browser)
    open_view(browser, "anomaly")
    wait(browser).until(lambda d: d.find_element(By.ID, "anomaly-input").get_attribute("value"))
    browser.find_element(By.ID, "anomaly-submit").click()
    wait(browser).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#anomaly-segments tbody tr"))
    assert "flagged segment" in text_of(browser, "anomaly-summary")
    assert float(text_of(browser, "anomaly-threshold")) > 0
    plot = browser.find_element(By.CSS_SELECTOR, "#anomaly-plot svg")
    segments = browser.find_elements(By.CSS_SELECTOR, "#anomaly-segments tbody tr")
    assert len(plot.find_elements(By.CSS_SELECTOR, "rect.segment")) == len(segments)
    assert plot.find_elements(By.CSS_SELECTOR, "rect.window") and plot.find_elements(By.CSS_SELECTOR, "circle.driver")
    assert plot.find_elements(By.CSS_SELECTOR, "line.threshold")
    drivers = segments[0].find_elements(By.TAG_NAME, "td")[4].text
    assert drivers != "-" and "(" in drivers  # the points that drove the first segment, with contributions
    screenshot(browser, shots, "series")


def test_a_tabular_row_shows_the_features_that_drove_it(browser: WebDriver, shots: list[Path]) -> None:
    use_token(browser)
    open_view(browser, "anomaly")
    browser.find_element(By.CSS_SELECTOR, "input[name=anomaly-kind][value=samples]").click()
    wait(browser).until(lambda d: len(Select(d.find_element(By.ID, "anomaly-sample")).options) == 2)
    Select(browser.find_element(By.ID, "anomaly-sample")).select_by_value("hyperfunction (class 1)")
    browser.find_element(By.ID, "anomaly-submit").click()
    wait(browser).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#anomaly-features .bar"))
    assert "anomaly" in text_of(browser, "anomaly-summary")
    bars = browser.find_elements(By.CSS_SELECTOR, "#anomaly-features .bar")
    assert len(bars) == 21  # one per thyroid feature, named from the model's config
    assert bars[0].text.split(" (")[0] in {"TSH", "T3", "TT4", "T4U", "FTI", "age"}
    screenshot(browser, shots, "tabular")


def test_the_model_list_shows_states_cards_and_plots(browser: WebDriver, shots: list[Path]) -> None:
    use_token(browser)
    open_view(browser, "models")
    wait(browser).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".model .plots img")) >= 10)
    cards = browser.find_elements(By.CSS_SELECTOR, "#models-list .model")
    names = {c.get_attribute("data-model") for c in cards}
    assert names == {
        "mnist-cnn",
        "sms-spam-transformer",
        "sentiment-gru",
        "sms-spam-minilm",
        "sentiment-minilm",
        "thyroid-autoencoder",
        "machine-temperature-autoencoder",
    }
    assert all(c.find_element(By.CSS_SELECTOR, ".state").text == "ready" for c in cards)
    mnist = next(c for c in cards if c.get_attribute("data-model") == "mnist-cnn")
    assert "version 1: ready" in mnist.text and "labels: 0, 1, 2" in mnist.text
    assert mnist.find_elements(By.CSS_SELECTOR, ".figures div")  # numbers from card.json's metrics
    wait(browser).until(
        lambda d: d.execute_script(
            "return [...document.querySelectorAll('.plots img')].every(i => i.complete && i.naturalWidth > 0)"
        )
    )
    screenshot(browser, shots, "models")


def test_without_explain_routes_the_page_still_answers_and_says_why(browser: WebDriver) -> None:
    # A server without the explain routes answers them 404 "not_found" (an older Axon, or a proxy that lacks them).
    browser.execute_script(
        "const real = window.fetch;"
        "window.fetch = (url, options) => String(url).includes('/explain')"
        "  ? Promise.resolve(new Response(JSON.stringify({error: 'no route', code: 'not_found'}),"
        "      {status: 404, headers: {'content-type': 'application/json'}}))"
        "  : real(url, options);"
    )
    use_token(browser)
    open_view(browser, "text")
    browser.find_element(By.ID, "text-submit").click()
    wait(browser).until(lambda d: "no /v1/text/explain" in d.find_element(By.ID, "text-status").text)
    assert text_of(browser, "text-label") == "spam"
    assert browser.find_elements(By.CSS_SELECTOR, "#text-tokens .tok") == []
    open_view(browser, "anomaly")
    wait(browser).until(lambda d: d.find_element(By.ID, "anomaly-input").get_attribute("value"))
    browser.find_element(By.ID, "anomaly-submit").click()
    wait(browser).until(lambda d: "no /v1/anomaly/explain" in d.find_element(By.ID, "anomaly-status").text)
    assert browser.find_elements(By.CSS_SELECTOR, "#anomaly-plot rect.segment")  # segments come from /score too
    assert browser.find_elements(By.CSS_SELECTOR, "#anomaly-plot circle.driver") == []
