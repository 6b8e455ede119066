"""The page of `sat-tf export --web` in headless Chromium on this CPU, beside `sat-tf-edge`.

Exports a model's page (int8 pair, calibrated on 16 COCO val2014 train photos), serves it from a
local static server, and measures in a fresh headless Chromium: the time from opening the page to
the first caption shown (a photo uploaded through the page's input as soon as it says "ready"),
milliseconds per caption (encoder + decoding, greedy and beam 3, timed inside the page, after the
first), the page's total download, and whether its captions equal `sat-tf-edge`'s on the same
photos; then the same photos through `sat-tf-edge` (ai-edge-litert, Python) for comparison.

    python -m benchmarks.deployment.web_page --model everyday_selftrained_lite0_448 --output benchmarks/results/web_page
"""

from __future__ import annotations

import argparse
import functools
import gzip
import http.server
import os
import shutil
import statistics
import threading
import time
from pathlib import Path

from benchmarks.common import add_output_argument

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import sat_tf  # noqa: E402, F401, I001  (first: sets TensorFlow's oneDNN switch as sat_tf's commands do)

from benchmarks.common import DATA  # noqa: E402
from benchmarks.common import command_line, machine, write_report  # noqa: E402

from sat_tf.data.images import load_image  # noqa: E402
from sat_tf.export.web_page import export_web  # noqa: E402
from sat_tf.workflows.caption import load_for_captioning  # noqa: E402
from sat_tf_edge import EdgeCaptioner  # noqa: E402

CAPTION_IN_PAGE = """
const done = arguments[arguments.length - 1];
(async () => {
  const times = [];
  const tokens = [];
  for (const pixels of arguments[0]) {
    const start = performance.now();
    const caption = await window.satTfBackend.captionPixels(pixels, arguments[1]);
    times.push(performance.now() - start);
    tokens.push(caption.tokens);
  }
  return { times, tokens };
})().then(done, (error) => done({ error: error.message }));
"""


def static_server(folder: Path):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.func.log_message = lambda *args: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}/", server.shutdown


def chromium():
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or shutil.which("chromium-browser")
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(flag)
    driver = webdriver.Chrome(
        service=webdriver.ChromeService(executable_path=shutil.which("chromedriver")), options=options
    )
    driver.set_script_timeout(600)
    return driver


def first_caption_seconds(url: str, photo: Path) -> tuple[float, dict]:
    """Opening the page (a fresh browser, nothing cached) to the first caption on screen."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = chromium()
    try:
        start = time.perf_counter()
        driver.get(url)
        WebDriverWait(driver, 120).until(lambda d: "ready" in d.find_element(By.ID, "status").text)
        driver.find_element(By.ID, "photo-input").send_keys(str(photo))
        WebDriverWait(driver, 120).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#caption .word"))
        seconds = time.perf_counter() - start
        fetched = driver.execute_script(
            "return performance.getEntriesByType('resource').map(e => [e.name, e.encodedBodySize]);"
        )
        return seconds, {name.split("/", 3)[-1]: size for name, size in fetched}  # path below the site
    finally:
        driver.quit()


def in_page(url: str, pixels: list, beam: int) -> dict:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = chromium()
    try:
        driver.get(url)
        WebDriverWait(driver, 120).until(lambda d: "ready" in d.find_element(By.ID, "status").text)
        result = driver.execute_async_script(CAPTION_IN_PAGE, [p.ravel().tolist() for p in pixels], beam)
        if "error" in result:
            raise RuntimeError(result["error"])
        return result
    finally:
        driver.quit()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="everyday_selftrained_lite0_448", help="preset, run folder or .keras")
    parser.add_argument("--photos", type=int, default=20, help="COCO val2014 dev photos timed")
    parser.add_argument("--site", default="runs/benchmarks/web_site", help="where the page is exported")
    add_output_argument(parser, "web_page")
    args = parser.parse_args()
    loaded = load_for_captioning([args.model])
    (model,) = loaded.model.members()
    size = model.encoder.image_size
    coco = DATA / "coco_val2014"
    calibration = sorted((coco / "images").glob("*.jpg"))[:16]  # train photos (the dev list is held apart)
    dev = [coco / "images" / name for name in (coco / "dev_images.txt").read_text().split()[: args.photos]]
    site = Path(args.site)
    paths = export_web(
        model, site, loaded.decoding.edge_settings(), loaded.calibration, "int8", "int8",
        [load_image(str(p), size) for p in calibration if p not in dev],
    )  # fmt: skip
    url, stop = static_server(site)
    try:
        first_seconds, fetched = first_caption_seconds(url, dev[0])
        pixels = [load_image(str(p), size) for p in dev]
        beam = in_page(url, pixels, loaded.decoding.beam_size)
        greedy = in_page(url, pixels, 1)
    finally:
        stop()
    edge = EdgeCaptioner(site)
    edge_times = {}
    edge_captions = []
    for beam_size in (loaded.decoding.beam_size, 1):
        times = []
        for image in pixels:
            tick = time.perf_counter()
            caption = edge.caption(image[None].astype("float32"), beam_size=beam_size)
            times.append(1000 * (time.perf_counter() - tick))
            if beam_size == loaded.decoding.beam_size:
                edge_captions.append(caption.tokens)
        edge_times[beam_size] = times
    raw = sum(fetched.values())
    gzipped = sum(len(gzip.compress((site / name).read_bytes())) for name in fetched if (site / name).is_file())
    rows = {
        "first caption after opening the page (s)": first_seconds,
        f"browser, beam {loaded.decoding.beam_size}, ms per caption (median after the first)": statistics.median(
            beam["times"][1:]
        ),
        "browser, greedy, ms per caption": statistics.median(greedy["times"][1:]),
        f"sat-tf-edge (Python), beam {loaded.decoding.beam_size}, ms per caption": statistics.median(
            edge_times[loaded.decoding.beam_size][1:]
        ),
        "sat-tf-edge (Python), greedy, ms per caption": statistics.median(edge_times[1][1:]),
        "page download (MB, as served)": raw / 1e6,
        "page download (MB, gzip-compressed)": gzipped / 1e6,
    }
    report = {
        "machine": machine(),
        "command": command_line(__spec__.name, args),
        "model": args.model,
        "photos": len(dev),
        "files": {key: str(path) for key, path in paths.items()},
        "downloaded": fetched,
        "rows": rows,
        "captions_equal_to_edge": sum(a == b for a, b in zip(beam["tokens"], edge_captions)),
        "browser_times_ms": {"beam": beam["times"], "greedy": greedy["times"]},
        "edge_times_ms": {str(k): v for k, v in edge_times.items()},
    }
    lines = ["| measure | value |", "|---|---|"] + [f"| {name} | {value:.2f} |" for name, value in rows.items()]
    lines.append(
        f"\nCaptions identical in the browser and sat-tf-edge: {report['captions_equal_to_edge']} of {len(dev)}."
    )
    write_report(args.output, report, "\n".join(lines))


if __name__ == "__main__":
    main()
