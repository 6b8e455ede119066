"""`sat-tf export --web`: the page captions photos in headless Chromium with LiteRT.js, and its captions
are `sat-tf-edge`'s for the same folder, token for token (generated photos always; 24 real photos
from ../shared/data when present).

Needs Debian's `chromium` and `chromium-driver` and the pinned runtime (`npm ci --prefix web`, as the
README's set-up and `.ci/run` do); without them the tests skip and say why.
"""

import functools
import http.server
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sat_tf.cli.common import DEFAULT_PRESET
from sat_tf.data import synthetic
from sat_tf.export.web_page import default_runtime_dir, export_web
from sat_tf.inference import BeamSampler, generate_captions

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
DECODING = {"beam_size": 3, "forbid_unknown": True, "no_repeat_ngram_size": 3, "not_sure_below": 0.5}


def _needs_runtime():
    if not (default_runtime_dir() / "@litertjs" / "core" / "package.json").is_file():
        pytest.skip("LiteRT.js is not installed: `npm ci --prefix web` (the README's set-up) runs this test")


def _static_server(folder: Path):
    """`python -m http.server` for the folder, on a free port; returns (url, stop)."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.func.log_message = lambda *args: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}/", server.shutdown


@pytest.fixture(scope="module")
def tiny_site(trained_tiny_model, tiny_data, tmp_path_factory):
    _needs_runtime()
    folder = tmp_path_factory.mktemp("web") / "site"
    export_web(trained_tiny_model, folder, DECODING, encoder_quantization="fp32", decoder_quantization="fp32",
               max_length=12)  # fmt: skip
    url, stop = _static_server(folder)
    yield folder, url
    stop()


def _open(browser, url):
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(url)
    WebDriverWait(browser, 60).until(lambda d: "ready" in d.find_element("id", "status").text)


def _caption_upload(browser, path: Path) -> dict:
    """Uploads a file through the page's own input and returns what the page shows."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.execute_script("document.getElementById('result').hidden = true; window.satTfPageDone = null;")
    browser.find_element(By.ID, "photo-input").send_keys(str(path))
    WebDriverWait(browser, 60).until(
        lambda d: d.find_element(By.ID, "error").is_displayed() or d.find_element(By.ID, "result").is_displayed()
    )
    if browser.find_element(By.ID, "error").is_displayed():
        return {"error": browser.find_element(By.ID, "error").text}
    prediction = browser.execute_script("return window.satTfPage.lastPrediction();")
    words = [w.text for w in browser.find_elements(By.CSS_SELECTOR, "#caption .word")]
    return {"words": words, **prediction}


def test_the_page_captions_generated_photos_as_the_edge_runtime_and_the_library(
    browser, tiny_site, trained_tiny_model, tiny_data, tmp_path
):
    from sat_tf_edge import EdgeCaptioner

    folder, url = tiny_site
    edge = EdgeCaptioner(folder)
    _open(browser, url)
    images = tiny_data[0].images[:6]
    library = generate_captions(
        trained_tiny_model, images=images, sampler=BeamSampler(3), max_length=12, forbid_unknown=True,
        no_repeat_ngram_size=3,
    )  # fmt: skip
    for index, image in enumerate(images):
        path = tmp_path / f"{index}.png"
        Image.fromarray(image).save(path)
        shown = _caption_upload(browser, path)
        on_device = edge.caption(str(path))
        assert shown["words"] == on_device.text.split()
        assert shown["tokens"] == on_device.tokens
        assert shown["caption"] == library.best_texts[index]
        assert shown["confidence"] == pytest.approx(on_device.confidence, abs=1e-3)
        assert shown["candidates"] == library.texts[index]


def test_hovering_a_word_lights_the_region_its_attention_puts_first(browser, tiny_site, tiny_data, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    from sat_tf_edge import EdgeCaptioner

    folder, url = tiny_site
    _open(browser, url)
    path = tmp_path / "white.png"  # on a white photo the overlay's shade is all the canvas shows
    Image.fromarray(np.full((32, 32, 3), 255, np.uint8)).save(path)
    _caption_upload(browser, path)
    alphas = EdgeCaptioner(folder).caption(str(path)).alphas
    words = browser.find_elements(By.CSS_SELECTOR, "#caption .word")
    for step in range(min(3, len(words))):
        ActionChains(browser).move_to_element(words[step]).perform()
        lit = _region_brightness(browser, alphas.shape[1])
        brightest = int(np.argmax(lit))
        assert alphas[step][brightest] >= 0.95 * alphas[step].max(), (step, brightest, alphas[step])


def _region_brightness(browser, regions: int) -> np.ndarray:
    """The canvas's mean brightness at the centre of each attention region."""
    script = """
      const canvas = document.getElementById('photo-canvas'); const side = Math.round(Math.sqrt(arguments[0]));
      const context = canvas.getContext('2d'); const values = [];
      for (let r = 0; r < side; r++) for (let c = 0; c < side; c++) {
        const x = Math.floor((c + 0.5) * canvas.width / side), y = Math.floor((r + 0.5) * canvas.height / side);
        const d = context.getImageData(x, y, 1, 1).data; values.push((d[0] + d[1] + d[2]) / 3);
      }
      return values;"""
    return np.asarray(browser.execute_script(script, regions), np.float64)


def test_a_file_that_is_not_a_photo_gives_the_error_line_and_the_page_recovers(browser, tiny_site, tiny_data, tmp_path):
    folder, url = tiny_site
    _open(browser, url)
    bad = tmp_path / "notes.jpg"
    bad.write_text("not a photo")
    shown = _caption_upload(browser, bad)
    assert "notes.jpg" in shown["error"] and "not a readable image" in shown["error"]
    good = tmp_path / "good.png"
    Image.fromarray(tiny_data[0].images[2]).save(good)
    assert _caption_upload(browser, good)["words"]


def test_the_page_fits_a_phone_screen(browser, tiny_site, tmp_path):
    folder, url = tiny_site
    browser.set_window_size(390, 844)
    try:
        _open(browser, url)
        portrait = tmp_path / "portrait.png"
        Image.fromarray(synthetic.generate(1, seed=5, image_size=96).images[0]).resize((300, 600)).save(portrait)
        assert _caption_upload(browser, portrait)["words"]
        overflow = browser.execute_script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth;"
        )
        assert overflow <= 0
        assert len(browser.get_screenshot_as_png()) > 1000
    finally:
        browser.set_window_size(1200, 900)


def test_the_default_presets_page_captions_real_photos_as_the_edge_runtime(browser, tmp_path_factory):
    """24 real photos (Flickr8k and COCO) uploaded through the page: the int8 pair's captions
    equal sat-tf-edge's token for token, and its confidence within 1e-3."""
    _needs_runtime()
    photos = (
        sorted((DATA / "flickr8k" / "images").glob("*.jpg"))[:12]
        + sorted((DATA / "coco_val2014" / "images").glob("*.jpg"))[-12:]
    )
    if len(photos) < 24:
        pytest.skip(f"the real photos are not here ({DATA}): the generated photos above still ran")
    from sat_tf.data.images import load_image
    from sat_tf.workflows.caption import load_for_captioning
    from sat_tf_edge import EdgeCaptioner

    loaded = load_for_captioning([DEFAULT_PRESET])
    (model,) = loaded.model.members()
    calibration_photos = sorted((DATA / "coco_val2014" / "images").glob("*.jpg"))[100:116]
    folder = tmp_path_factory.mktemp("preset_web") / "site"
    export_web(
        model, folder, loaded.decoding.edge_settings(), loaded.calibration, "int8", "int8",
        [load_image(str(p), model.encoder.image_size) for p in calibration_photos],
    )  # fmt: skip
    url, stop = _static_server(folder)
    try:
        _open(browser, url)
        edge = EdgeCaptioner(folder)
        for photo in photos:
            shown = _caption_upload(browser, photo)
            on_device = edge.caption(str(photo))
            assert shown["tokens"] == on_device.tokens, photo.name
            assert shown["confidence"] == pytest.approx(on_device.confidence, abs=1e-3), photo.name
            # the encoder file's ImageNet classifier: the same "it may show" words in the browser
            in_browser = dict(zip(shown["tags"], shown["tag_probabilities"]))
            for tag in on_device.tags:
                assert in_browser.get(tag.word) == pytest.approx(tag.probability, abs=1e-3), photo.name
    finally:
        stop()
