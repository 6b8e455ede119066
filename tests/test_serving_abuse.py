"""`sat-tf serve` under abuse, against a live server (waitress on a loopback port): random
requests never get a 5xx or a non-JSON error, each defect found by hand stays fixed, and the
server's limits (pixels, requests in flight) hold."""

import base64
import io
import json
import logging
import threading
import time

import numpy as np
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from sat_tf.export.saved_model import export_saved_model
from sat_tf.serving.limits import ServingLimits
from sat_tf.serving.server import create_app

NAME = "abuse"
PAGE_PATHS = {"/", "/page.js", "/page.css"}  # the page's own files are not JSON
FUZZ_REQUESTS = settings(
    max_examples=1000,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _png(width: int, height: int, seed: int = 0) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class LiveServer:
    """create_app under waitress on a free loopback port, in a daemon thread."""

    def __init__(self, model_dir, limits: ServingLimits, **batching):
        from waitress.server import create_server

        self.app = create_app(model_dir, limits=limits, **batching)
        self.server = create_server(self.app, host="127.0.0.1", port=0, threads=limits.wsgi_threads)
        self.url = f"http://127.0.0.1:{self.server.effective_port}"
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()

    def close(self):
        self.server.close()
        self.app.extensions["sat_tf_batcher"].close()


@pytest.fixture(scope="module")
def model_base(trained_tiny_model, tmp_path_factory):
    return export_saved_model(trained_tiny_model, tmp_path_factory.mktemp("abuse"), NAME, 2, max_length=8).parent


@pytest.fixture(scope="module")
def live(model_base):
    # refusals answered at once: the fuzz is about what is answered (the delay has its own test)
    server = LiveServer(model_base, ServingLimits(max_image_pixels=40_000, max_in_flight=8, refusal_delay_s=0))
    yield server
    server.close()


paths = st.one_of(
    st.sampled_from(
        [
            f"/v1/models/{NAME}",
            f"/v1/models/{NAME}:predict",
            f"/v1/models/{NAME}/metadata",
            f"/v1/models/{NAME}/versions/2",
            f"/v1/models/{NAME}/versions/7:predict",
            f"/v1/models/{NAME}/versions/2:predict",
            f"/v1/models/{NAME}/labels/stable",
            f"/v1/models/{NAME}/labels/x:predict",
            "/v1/models/other:predict",
            "/page-config.json",
            "/v1/models",
            "/v1",
            "/nothing",
            "/page.js",
            "/",
        ]
    ),
    st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126, exclude_characters="?#%"), max_size=40).map(
        lambda tail: f"/v1/models/{NAME}/{tail}"
    ),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=8,
)
instances = st.lists(
    st.one_of(
        st.builds(lambda w, h: {"b64": _b64(_png(w, h))}, st.integers(1, 24), st.integers(1, 24)),
        st.builds(lambda w: {"b64": _b64(_png(w, 300))}, st.integers(150, 400)),  # over the 40,000-pixel limit
        st.builds(lambda s: {"b64": s}, st.text(max_size=12)),
        json_values,
    ),
    max_size=3,
)
bodies = st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries(
        {"instances": instances},
        optional={"signature_name": json_values | st.sampled_from(["beam_search", "caption_images"])},
    ).map(lambda v: json.dumps(v).encode()),
    st.builds(lambda column: json.dumps({"inputs": {"image_bytes": column}}).encode(), instances),
    st.text(max_size=50).map(lambda t: t.encode("utf-16", "surrogatepass")),
)


@FUZZ_REQUESTS
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]),
    path=paths,
    body=bodies,
    content_type=st.sampled_from(
        ["application/json", "text/plain", "", "application/x-www-form-urlencoded; charset=utf-16"]
    ),
)
def test_random_requests_get_no_5xx_and_json_errors(live, method, path, body, content_type):
    response = requests.request(method, live.url + path, data=body, headers={"Content-Type": content_type}, timeout=30)
    assert response.status_code < 500, (method, path, response.status_code, response.text[:300])
    # every error is JSON, and so is every answer but the page's own files, HEAD and OPTIONS (an
    # empty 200 with the Allow header)
    if method != "HEAD" and (response.status_code >= 400 or (method != "OPTIONS" and path not in PAGE_PATHS)):
        assert response.headers["Content-Type"].startswith("application/json"), (method, path, response.text[:200])
    if response.status_code >= 400 and method != "HEAD":
        assert isinstance(response.json()["error"], str)


def test_the_defects_found_by_hand_stay_fixed(live):
    predict, image = f"{live.url}/v1/models/{NAME}:predict", {"b64": _b64(_png(8, 8))}
    # a list as signature_name was a 500 with an HTML body
    response = requests.post(predict, json={"signature_name": ["x"], "instances": [image]})
    assert response.status_code == 400 and "signature_name" in response.json()["error"]
    # another version than the one served, and version labels, are 404s as in TF Serving
    assert requests.get(f"{live.url}/v1/models/{NAME}/versions/7").status_code == 404
    assert (
        requests.post(f"{live.url}/v1/models/{NAME}/versions/7:predict", json={"instances": [image]}).status_code == 404
    )
    assert (
        requests.post(f"{live.url}/v1/models/{NAME}/versions/2:predict", json={"instances": [image]}).status_code == 200
    )
    assert "label" in requests.get(f"{live.url}/v1/models/{NAME}/labels/stable").json()["error"]
    # 405 answers are JSON, with the allowed methods
    wrong_method = requests.get(predict)
    assert wrong_method.status_code == 405 and wrong_method.json()["error"] and "POST" in wrong_method.headers["Allow"]
    # an image over the server's pixel limit is refused quoting that limit (not Pillow's), from its header
    huge = requests.post(predict, json={"instances": [{"b64": _b64(_png(400, 400))}]})
    assert huge.status_code == 400 and "40,000-pixel limit" in huge.json()["error"]
    # metadata in TF Serving's SignatureDef JSON
    meta = requests.get(f"{live.url}/v1/models/{NAME}/metadata").json()
    assert meta["model_spec"] == {"name": NAME, "signature_name": "", "version": "2"}
    serving = meta["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert serving["inputs"]["image_bytes"]["dtype"] == "DT_STRING"
    assert serving["inputs"]["image_bytes"]["tensor_shape"] == {
        "dim": [{"size": "-1", "name": ""}],
        "unknown_rank": False,
    }
    assert serving["outputs"]["caption"]["dtype"] == "DT_STRING"
    assert serving["method_name"] == "tensorflow/serving/predict"


def test_an_internal_fault_is_a_logged_json_500_without_the_traceback(model_base, caplog):
    app = create_app(model_base)

    def broken(*_args):
        raise KeyError("a bug")

    app.extensions["sat_tf_batcher"].run_batch = broken
    app.extensions["sat_tf_batcher"].run = lambda *args: broken()
    with caplog.at_level(logging.ERROR, logger="sat_tf.serving"):
        response = app.test_client().post(f"/v1/models/{NAME}:predict", json={"instances": [{"b64": _b64(_png(4, 4))}]})
    assert response.status_code == 500
    assert response.get_json() == {"error": "internal server error (logged by the server)"}
    assert "a bug" in caplog.text and "Traceback" in caplog.text
    app.extensions["sat_tf_batcher"].close()


def test_a_flood_gets_fast_503s_while_admitted_requests_are_answered(model_base):
    """More concurrent requests than `max_in_flight`: the extra ones are refused at once with
    Retry-After; every admitted one is answered 200."""
    server = LiveServer(model_base, ServingLimits(max_in_flight=2, spare_threads=4), max_batch_size=1)
    gate, release = threading.Event(), threading.Event()
    batcher = server.app.extensions["sat_tf_batcher"]
    real_run = batcher.run_batch

    def slow_run(name, images):  # holds the graph until the flood has been answered
        gate.set()
        release.wait(30)
        return real_run(name, images)

    batcher.run_batch = slow_run
    predict, body = f"{server.url}/v1/models/{NAME}:predict", {"instances": [{"b64": _b64(_png(8, 8))}]}
    try:
        held = [threading.Thread(target=requests.post, args=(predict,), kwargs={"json": body}) for _ in range(2)]
        for thread in held:
            thread.start()
        assert gate.wait(30)
        time.sleep(0.2)  # the second request is admitted and queued behind the first
        started = time.monotonic()
        refused = [requests.post(predict, json=body, timeout=10) for _ in range(5)]
        assert time.monotonic() - started < 5.0
        assert all(r.status_code == 503 and r.headers["Retry-After"] == "1" for r in refused)
        assert "max_in_flight" in refused[0].json()["error"]
        assert requests.get(f"{server.url}/v1/models/{NAME}").status_code == 200  # status still answers
    finally:
        release.set()
        for thread in held:
            thread.join(30)
    assert requests.post(predict, json=body).status_code == 200  # admitted again once they are done
    server.close()


def test_a_request_refused_for_its_size_waits_and_others_are_not_delayed(model_base):
    from concurrent.futures import ThreadPoolExecutor

    limits = ServingLimits(max_image_pixels=40_000, max_in_flight=8, refusal_delay_s=0.5, delayed_refusals=2)
    server = LiveServer(model_base, limits)
    url = f"{server.url}/v1/models/{NAME}:predict"
    huge = json.dumps({"instances": [{"b64": _b64(_png(300, 300))}]})  # 90,000 pixels over 40,000

    def timed(body: str) -> tuple[float, int, str]:
        start = time.perf_counter()
        response = requests.post(url, data=body, timeout=30)
        return time.perf_counter() - start, response.status_code, response.json()["error"]

    try:
        took, status, message = timed(huge)
        assert status == 400 and "40,000-pixel limit" in message and took >= 0.5
        took, status, _ = timed("not json")  # a client's mistake is answered at once
        assert status == 400 and took < 0.5
        # more refusals at once than may wait: the two delayed ones hold threads, the rest are answered at once
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(timed, [huge] * 4))
        assert {status for _, status, _ in results} == {400}
        assert sum(took >= 0.5 for took, _, _ in results) == 2
    finally:
        server.close()


def test_status_says_loading_until_the_model_is_ready_and_predictions_wait_with_503(model_base, monkeypatch):
    import sat_tf.serving.model as server_module  # where the SavedModel is loaded

    loaded = threading.Event()
    real_load = server_module.tf.saved_model.load

    def slow_load(path):
        loaded.wait(30)
        return real_load(path)

    monkeypatch.setattr(server_module.tf.saved_model, "load", slow_load)
    app = create_app(model_base, load_in_background=True)
    client = app.test_client()
    status = client.get(f"/v1/models/{NAME}").get_json()["model_version_status"][0]
    assert status["state"] == "LOADING" and status["version"] == "2"
    busy = client.post(f"/v1/models/{NAME}:predict", json={"instances": [{"b64": _b64(_png(4, 4))}]})
    assert busy.status_code == 503 and busy.headers["Retry-After"] == "1"
    loaded.set()
    assert app.extensions["sat_tf_model"].loaded.wait(60)
    assert client.get(f"/v1/models/{NAME}").get_json()["model_version_status"][0]["state"] == "AVAILABLE"
    app.extensions["sat_tf_batcher"].close()


def test_access_log_has_one_line_per_request_with_status_latency_and_batch(live, caplog):
    with caplog.at_level(logging.INFO, logger="sat_tf.serving.access"):
        requests.post(f"{live.url}/v1/models/{NAME}:predict", json={"instances": [{"b64": _b64(_png(6, 6))}]})
        requests.get(f"{live.url}/v1/models/{NAME}/versions/9")
    lines = [r.getMessage() for r in caplog.records if r.name == "sat_tf.serving.access"]
    assert any(line.startswith(f"POST /v1/models/{NAME}:predict 200 ") and line.endswith("batch=1") for line in lines)
    assert any(line.startswith(f"GET /v1/models/{NAME}/versions/9 404 ") for line in lines)


def test_sat_tf_serve_announces_the_real_name_version_and_page_once_loaded(model_base):
    import os
    import socket
    import subprocess
    import sys

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "sat_tf.cli", "serve", "--model-dir", str(model_base), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    try:
        line = process.stdout.readline().strip()
        url = f"http://127.0.0.1:{port}"
        assert line == f"serving model '{NAME}' version 2 at {url}/v1/models/{NAME} (page: {url}/)"
        status = requests.get(f"{url}/v1/models/{NAME}", timeout=10).json()["model_version_status"][0]
        assert status["state"] == "AVAILABLE"  # announced only once it is
    finally:
        process.terminate()
        process.wait(timeout=30)
