"""The upload page in a real browser: headless Chromium picks an image file, the page sends it to
the service, and the answer is drawn (checked on a screenshot) and listed (checked in the DOM)."""

import json
import re
import shutil
import urllib.request
from decimal import ROUND_HALF_UP, Decimal

import pytest
from PIL import Image

pytest.importorskip("uvicorn", reason="the serve extra is not installed: pip install -e '.[test,serve]'")
pytest.importorskip("selenium", reason="selenium (the test extra) is not installed")
CHROMIUM = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None,
                                reason="Chromium or chromedriver not found (Debian: apt-get install chromium "
                                       "chromium-driver)")

from .test_serve import make_checkpoint, served_images, serving_in_thread  # noqa: E402


@pytest.fixture(scope="module")
def service(tmp_path_factory, shapes_dir):
    """The app on uvicorn in a thread of this process, on a free loopback port."""
    from simpledet.serve.app import build_app
    from simpledet.serve.model import load_served_model

    model = load_served_model(make_checkpoint(tmp_path_factory.mktemp("browser_model"), shapes_dir))
    with serving_in_thread(build_app(model)) as client:
        yield f"http://127.0.0.1:{client.port}"


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM  # both paths given: selenium-manager looks nothing up or down
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1200,1000", "--force-device-scale-factor=1"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def two_decimals(score: float) -> str:
    """As JavaScript's toFixed(2) writes a number: its exact value, halves rounded up."""
    return str(Decimal(score).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def test_page_uploads_an_image_and_draws_the_detections(service, browser, shapes_dir, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    image = served_images(shapes_dir)[6]  # 128 wide, 160 high
    request = urllib.request.Request(service + "/v1/detect?score_thresh=0.5", data=image.read_bytes(),
                                     headers={"Content-Type": "image/png"})
    with urllib.request.urlopen(request, timeout=60) as response:
        answer = json.loads(response.read())
    assert answer["detections"], "the test needs an image with detections above the page's 0.5"

    browser.get(service + "/")
    browser.find_element(By.ID, "file").send_keys(str(image))  # what choosing the file does
    WebDriverWait(browser, 60).until(lambda d: "detection" in d.find_element(By.ID, "status").text)
    items = browser.find_elements(By.CSS_SELECTOR, "li.detection")
    assert [item.text for item in items] == [f"{d['category_name']} {two_decimals(d['score'])}"
                                             for d in answer["detections"]]
    browser.save_screenshot(str(tmp_path / "page.png"))
    shot_path = tmp_path / "canvas.png"
    browser.find_element(By.ID, "canvas").screenshot(str(shot_path))

    zoom = 512 // max(answer["width"], answer["height"])  # the page enlarges small images as predict --vis does
    width, height = answer["width"] * zoom, answer["height"] * zoom
    shot = Image.open(shot_path).convert("RGB")
    assert shot.size == (width + 2, height + 2)  # with the canvas's 1 px border
    shot = shot.crop((1, 1, width + 1, height + 1))
    with Image.open(image) as original:
        plain = original.convert("RGB").resize(shot.size, Image.NEAREST)
    # the best detection is drawn last, in its category's colour: its left edge, below its label
    best = answer["detections"][0]
    colour = tuple(int(v) for v in re.findall(r"\d+", items[0].value_of_css_property("color"))[:3])
    x, y, w, h = (v * zoom for v in best["bbox"])
    window = [(round(x) + dx, round(y + 0.75 * h) + dy) for dx in range(-2, 3) for dy in range(-2, 3)]

    def has_colour(picture: Image.Image) -> bool:
        return any(sum(abs(a - b) for a, b in zip(picture.getpixel(p), colour)) <= 60 for p in window)

    assert has_colour(shot) and not has_colour(plain)
