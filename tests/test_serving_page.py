"""The page of `sat-tf serve`, driven in a real headless Chromium, and request batching under load.

The browser test needs Debian's `chromium` and `chromium-driver` (the README's install block and
`.ci/run` install them); without them it skips and says why.
"""

import base64
import io
import json
import re
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from sat_tf.export.saved_model import export_saved_model
from sat_tf.inference import BeamSampler, generate_captions
from sat_tf.serving.batching import QueueFullError, RequestBatcher
from sat_tf.serving.limits import ServingLimits
from sat_tf.serving.server import create_app

# The exported model's own "not sure" threshold, other than the library's default: the page reads it.
NOT_SURE_BELOW = 0.3


@pytest.fixture(scope="module")
def served_model_dir(trained_tiny_model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("page_serving")
    export_saved_model(
        trained_tiny_model, folder, "captioner", 1, max_length=12, beam_size=3, not_sure_below=NOT_SURE_BELOW
    )
    return folder / "captioner"


@pytest.fixture(scope="module")
def live_server(served_model_dir):
    """The app on a real WSGI server (waitress, as `sat-tf serve` runs it) on 127.0.0.1."""
    from waitress.server import create_server

    app = create_app(served_model_dir)
    server = create_server(app, host="127.0.0.1", port=0, threads=8)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.effective_port}/"
    server.close()


def _jpeg(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).resize((160, 120)).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def _canvas_pixels(driver) -> str:
    return driver.execute_script("return document.getElementById('photo-canvas').toDataURL('image/png');")


def test_the_page_reads_the_exported_models_not_sure_threshold(served_model_dir):
    config = create_app(served_model_dir).test_client().get("/page-config.json").get_json()
    assert config["not_sure_below"] == NOT_SURE_BELOW


def _decisive_jpeg(model, images, folder):
    """The photo whose caption is the most decisive once it is a JPEG (the graph decodes JPEGs within
    a grey level of Pillow, so a near-tie could go either way), as a file and as Pillow decodes it."""
    from conftest import FIXTURE_MARGIN, greedy_margins

    files = [folder / f"photo_{k}.jpg" for k in range(len(images))]
    for file, image in zip(files, images):
        file.write_bytes(_jpeg(image))
    decoded = np.stack([np.asarray(Image.open(file).convert("RGB"), np.float32) for file in files])
    margins = greedy_margins(model, decoded)
    best = int(np.argmax(margins))
    assert margins[best] >= FIXTURE_MARGIN, margins
    return files[best], decoded[best : best + 1]


def test_page_captions_an_upload_and_shows_attention_per_word(
    browser, live_server, trained_tiny_model, tiny_data, tmp_path
):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    photo, decoded = _decisive_jpeg(trained_tiny_model, tiny_data[0].images[:6], tmp_path)
    expected = generate_captions(trained_tiny_model, images=decoded, sampler=BeamSampler(3), max_length=12)

    browser.get(live_server)
    wait = WebDriverWait(browser, 60)
    browser.find_element(By.ID, "photo-input").send_keys(str(photo))
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#caption .word"))
    words = browser.find_elements(By.CSS_SELECTOR, "#caption .word")
    assert " ".join(w.text for w in words) == expected.best_texts[0]
    candidates = [
        item.text.split("log p")[0].strip() for item in browser.find_elements(By.CSS_SELECTOR, "#candidates li")
    ]
    assert candidates == expected.texts[0]
    # said as a number (the graph decodes the JPEG within a grey level of Pillow: close, not equal),
    # with "not sure" below the threshold
    confidence = float(expected.best().confidence[0])
    status = browser.find_element(By.ID, "status").text
    shown = float(re.search(r"confidence (\d\.\d\d)", status).group(1))
    assert abs(shown - confidence) <= 0.02
    assert ("Not sure" in status) == (shown < NOT_SURE_BELOW)

    plain = _canvas_pixels(browser)
    ActionChains(browser).move_to_element(words[0]).perform()
    wait.until(lambda d: _canvas_pixels(d) != plain)
    first_word = _canvas_pixels(browser)
    assert "active" in words[0].get_attribute("class")
    # the map is drawn on an absolute scale, with its legend and the word's peak share said in words
    assert "share of attention" in browser.find_element(By.ID, "legend").text
    assert "20% or more" in browser.find_element(By.ID, "legend").text
    shades = browser.execute_script("return [0, 0.05, 0.1, 0.2, 0.9].map(satTfPage.shadeFor)")
    assert shades == pytest.approx([0.85, 0.6375, 0.425, 0.0, 0.0])
    focus = browser.find_element(By.ID, "focus").text
    peak = float(expected.best().alphas[0][0].max())
    shown_peak = int(re.search(rf'"{re.escape(words[0].text)}": at most (\d+)% of the attention', focus).group(1))
    assert abs(shown_peak - 100 * peak) <= 2.0  # the graph's JPEG decoding differs by a grey level
    assert not browser.find_element(By.ID, "spinner").is_displayed()
    if len(words) > 1:  # another word, another map (the model's alphas differ between steps)
        ActionChains(browser).move_to_element(words[-1]).perform()
        wait.until(lambda d: _canvas_pixels(d) not in (plain, first_word))
    ActionChains(browser).move_to_element(browser.find_element(By.TAG_NAME, "h1")).perform()
    wait.until(lambda d: _canvas_pixels(d) == plain)  # leaving the words shows the plain photo again

    # not sure: the caption stays, marked, with what the photo may show (as `sat-tf caption` prints
    # sat_tf_edge.confidence.confidence_text); hidden only when the user asks for it
    caption_words = " ".join(w.text for w in browser.find_elements(By.CSS_SELECTOR, "#caption .word"))
    elephant = "[{word: 'elephant', probability: 0.87}]"
    browser.execute_script(f"satTfPage.showDoubt({{confidence: 0.01}}, {elephant})")
    not_sure = browser.find_element(By.ID, "not-sure")
    assert not_sure.is_displayed() and not_sure.text == "Not sure about this caption; it may show: elephant 87%"
    assert browser.find_element(By.ID, "caption").is_displayed() and caption_words == expected.best_texts[0]
    browser.execute_script("satTfPage.showDoubt({confidence: 0.99}, [])")  # sure: no mark
    assert not browser.find_element(By.ID, "not-sure").is_displayed()
    browser.find_element(By.ID, "hide-not-sure").click()
    browser.execute_script(f"satTfPage.showDoubt({{confidence: 0.01}}, {elephant})")
    assert not_sure.text == "Not sure what this is; it looks like: elephant 87%"
    assert not browser.find_element(By.ID, "caption").is_displayed()
    browser.execute_script("satTfPage.showDoubt({confidence: 0.99}, [])")  # a sure caption is never hidden
    assert browser.find_element(By.ID, "caption").is_displayed()
    browser.find_element(By.ID, "hide-not-sure").click()


def test_page_reports_bad_uploads_and_the_server_stays_up(browser, live_server, tiny_data, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(live_server)
    wait = WebDriverWait(browser, 60)
    upload = browser.find_element(By.ID, "photo-input")
    error = browser.find_element(By.ID, "error")
    result = browser.find_element(By.ID, "result")

    first = tmp_path / "first.jpg"
    first.write_bytes(_jpeg(tiny_data[0].images[2]))
    upload.send_keys(str(first))
    wait.until(lambda d: result.is_displayed())
    not_an_image = tmp_path / "notes.jpg"
    not_an_image.write_text("these are my notes, not a photo")
    upload.send_keys(str(not_an_image))
    wait.until(lambda d: error.is_displayed())
    assert "Could not caption notes.jpg" in error.text and "not a decodable image" in error.text
    assert not result.is_displayed()  # the error replaces the previous photo's caption
    assert not browser.find_element(By.ID, "spinner").is_displayed()

    oversized = tmp_path / "huge.jpg"
    oversized.write_bytes(b"\xff\xd8" + bytes(ServingLimits.max_request_bytes))
    upload.send_keys(str(oversized))
    wait.until(lambda d: "too large" in error.text)
    assert "huge.jpg" in error.text

    photo = tmp_path / "photo.jpg"
    photo.write_bytes(_jpeg(tiny_data[0].images[1]))
    upload.send_keys(str(photo))
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#caption .word") and not error.is_displayed())
    with urllib.request.urlopen(live_server + "v1/models/captioner") as response:
        assert json.load(response)["model_version_status"][0]["state"] == "AVAILABLE"


def test_a_portrait_photo_fits_the_screen(browser, live_server, tiny_data, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.set_window_size(900, 700)
    browser.get(live_server)
    portrait = tmp_path / "portrait.jpg"
    buffer = io.BytesIO()
    Image.fromarray(tiny_data[0].images[3]).resize((300, 500)).save(buffer, format="JPEG", quality=90)
    portrait.write_bytes(buffer.getvalue())
    browser.find_element(By.ID, "photo-input").send_keys(str(portrait))
    WebDriverWait(browser, 60).until(lambda d: d.find_element(By.ID, "result").is_displayed())
    width, height, window = browser.execute_script(
        "const r = document.getElementById('photo-canvas').getBoundingClientRect();"
        "return [r.width, r.height, window.innerHeight];"
    )
    assert height <= 0.7 * window + 1  # the whole photo is on screen, not cropped or stretched
    assert width / height == pytest.approx(300 / 500, rel=0.02)


def test_concurrent_requests_share_graph_calls_and_get_their_own_rows(live_server, trained_tiny_model, tiny_data):
    images = tiny_data[0].images[:16]
    expected = generate_captions(trained_tiny_model, images=images, max_length=12).best().texts
    url = live_server + "v1/models/captioner:predict"

    def caption(index: int) -> str:
        payload = {"instances": [{"b64": base64.b64encode(_png(images[index])).decode()}]}
        request = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST")
        with urllib.request.urlopen(request) as response:
            return json.load(response)["predictions"][0]["caption"]

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(caption, range(16)))
    assert answers == expected


def _png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


class _SlowDoubler:
    """A stand-in graph: doubles numbers, records its batches, and can be held shut."""

    def __init__(self):
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()  # a batch has reached the graph
        self.calls: list[list] = []

    def __call__(self, signature, images):
        self.entered.set()
        self.gate.wait()
        if b"bad" in images:
            raise ValueError("cannot decode")
        self.calls.append(list(images))
        return {
            "value": np.array([2 * int(image) for image in images]),
            "signature": np.array([signature] * len(images)),
        }


@pytest.mark.parametrize("threads", [1, 2])
def test_batcher_groups_requests_up_to_the_batch_size_and_answers_each_its_rows(threads):
    graph = _SlowDoubler()
    graph.gate.clear()  # hold the workers on their first batch so the other requests queue up behind
    batcher = RequestBatcher(
        graph, max_batch_size=4, batch_timeout_ms=50, max_queued_requests=32, num_batch_threads=threads
    )
    with ThreadPoolExecutor(9) as pool:
        futures = [pool.submit(batcher.submit, "a", [b"0"])]
        assert graph.entered.wait(timeout=30)  # a worker holds request 0 in the graph
        futures += [pool.submit(batcher.submit, "a", [str(i).encode()]) for i in range(1, 9)]
        if threads == 1:  # let all 8 queue behind request 0 before the graph opens
            deadline = time.monotonic() + 30
            while batcher.queued < 8 and time.monotonic() < deadline:
                time.sleep(0.01)
        graph.gate.set()
        results = [f.result(timeout=30) for f in futures]
    assert [int(r["value"][0]) for r in results] == [2 * i for i in range(9)]
    assert max(len(call) for call in graph.calls) <= 4 and sum(len(c) for c in graph.calls) == 9
    if threads == 1:  # request 0 alone, then the 8 queued behind it in two full batches
        assert [len(call) for call in graph.calls] == [1, 4, 4]
    # a failing request fails alone; its batch-mates get their answers
    with ThreadPoolExecutor(3) as pool:
        graph.gate.clear()
        futures = [pool.submit(batcher.submit, "a", [image]) for image in (b"1", b"bad", b"3")]
        time.sleep(0.3)
        graph.gate.set()
        assert int(futures[0].result(timeout=10)["value"][0]) == 2
        with pytest.raises(ValueError, match="cannot decode"):
            futures[1].result(timeout=10)
        assert int(futures[2].result(timeout=10)["value"][0]) == 6
    # different signatures never share a call
    graph.calls.clear()
    with ThreadPoolExecutor(4) as pool:
        graph.gate.clear()
        futures = [pool.submit(batcher.submit, name, [b"5"]) for name in ("a", "b", "a", "b")]
        time.sleep(0.3)
        graph.gate.set()
        assert [str(f.result(timeout=10)["signature"][0]) for f in futures] == ["a", "b", "a", "b"]
    batcher.close()


def test_a_full_queue_is_refused_at_once_and_the_server_answers_503(served_model_dir):
    graph = _SlowDoubler()
    graph.gate.clear()
    batcher = RequestBatcher(graph, max_batch_size=1, batch_timeout_ms=0, max_queued_requests=2)
    pool = ThreadPoolExecutor(3)
    held = [pool.submit(batcher.submit, "a", [b"1"])]  # taken by the worker, held in the graph
    assert graph.entered.wait(timeout=30)
    held += [pool.submit(batcher.submit, "a", [b"1"]) for _ in range(2)]  # fill the queue
    deadline = time.monotonic() + 30
    while batcher.queued < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert batcher.queued == 2
    started = time.monotonic()
    with pytest.raises(QueueFullError, match="max_queued_requests"):
        batcher.submit("a", [b"2"])
    assert time.monotonic() - started < 1.0
    graph.gate.set()
    assert all(int(f.result(timeout=10)["value"][0]) == 2 for f in held)
    pool.shutdown()
    batcher.close()

    app = create_app(served_model_dir, max_batch_size=1, max_queued_requests=1)
    real = app.extensions["sat_tf_batcher"]
    real.run = lambda *args: (_ for _ in ()).throw(QueueFullError("server busy: test"))
    response = app.test_client().post("/v1/models/captioner:predict", json={"instances": [{"b64": "AA=="}]})
    # a bad image is still a 400 before the queue is involved ...
    assert response.status_code == 400
    image = base64.b64encode(_png(np.zeros((8, 8, 3), np.uint8))).decode()
    busy = app.test_client().post("/v1/models/captioner:predict", json={"instances": [{"b64": image}]})
    assert busy.status_code == 503 and "server busy" in busy.get_json()["error"]
    assert busy.headers["Retry-After"] == "1"


def test_the_page_routes_work_alone_over_a_stub_context():
    """A route blueprint needs only a serving context: no SavedModel, no TensorFlow call."""
    from types import SimpleNamespace

    from flask import Flask

    from sat_tf.serving.page_routes import page

    app = Flask("stub")
    app.register_blueprint(page)
    app.extensions["sat_tf"] = SimpleNamespace(
        name="stub",
        limits=ServingLimits(max_request_bytes=1000),
        settings={"not_sure_below": 0.4},
        model=SimpleNamespace(image_signatures=lambda: ["serving_default"]),
    )
    client = app.test_client()
    assert client.get("/page-config.json").get_json() == {
        "model": "stub",
        "max_request_bytes": 1000,
        "max_image_pixels": ServingLimits().max_image_pixels,
        "not_sure_below": 0.4,
        "signature": "serving_default",
    }
    assert b'id="photo-input"' in client.get("/").data
    assert client.get("/page.js").mimetype == "text/javascript"
