"""`sat-tf serve` under abuse, over loopback: does a fair client still get served?

1. normal requests (one Flickr8k JPEG each, one client) alone: p50 / p99 latency;
2. the same while 4 clients keep sending 49-megapixel PNGs (7000 x 7000, ~200 KB on the wire):
   goal p99 <= 2x alone (they are refused from the header, before decoding). The attackers run
   in processes of their own, as remote clients would: threads of the measuring process would
   hold its interpreter lock and delay the fair client's own timing;
3. a flood of 200 concurrent normal requests: how soon the first 503 comes back (goal: within
   1 s), how many were admitted, and the admitted requests' p99;
4. the server's RSS after 200 and after 2,000 mixed requests (normal, huge, malformed; goal:
   the second <= 1.2x the first).

    sat-tf export --model flickr8k_lite0 --saved-model-dir runs/serving
    python -m benchmarks.serving.serve_abuse --model-dir runs/serving/sat_tf \\
        [--output benchmarks/results/serve_abuse.json]
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures
import io
import json
import multiprocessing
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import requests
from PIL import Image

from benchmarks.common import DATA, add_output_argument
from sat_tf.utils.atomic import write_json_atomic
from sat_tf.utils.cpu import describe_machine

DEV_IMAGES = DATA / "flickr8k" / "images"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def _huge_png() -> bytes:
    """7000 x 7000 pixels of one colour: tiny on the wire, 49 MP to decode."""
    buffer = io.BytesIO()
    Image.new("RGB", (7000, 7000), (90, 120, 150)).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def _percentiles(latencies: list[float]) -> dict:
    ordered = sorted(latencies)
    return {
        "p50_ms": statistics.median(ordered),
        "p99_ms": ordered[int(0.99 * (len(ordered) - 1))],
        "count": len(ordered),
    }


class Server:
    def __init__(self, model_dir: str, extra: list[str]):
        self.port = _free_port()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "sat_tf.cli", "serve", "--model-dir", model_dir, "--port", str(self.port), *extra],
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.base = f"http://127.0.0.1:{self.port}/v1/models/{Path(model_dir).name}"
        deadline = time.time() + 180
        while True:
            try:
                status = requests.get(self.base, timeout=2).json()["model_version_status"][0]["state"]
                if status == "AVAILABLE":
                    break
            except (requests.ConnectionError, ValueError, KeyError):
                pass
            if time.time() > deadline or self.process.poll() is not None:
                raise SystemExit("server did not come up")
            time.sleep(0.5)

    def predict(self, body: str, timeout: float = 120) -> tuple[float, int]:
        start = time.perf_counter()
        response = requests.post(f"{self.base}:predict", data=body, timeout=timeout)
        return 1000 * (time.perf_counter() - start), response.status_code

    def close(self):
        self.process.terminate()
        self.process.wait(timeout=30)


def _send_until_stopped(url: str, body: str, stop, results) -> None:
    """An attacking client (its own process): sends `body` in a loop until `stop` is set, then
    reports the statuses it got."""
    statuses = []
    with requests.Session() as session:
        while not stop.is_set():
            statuses.append(session.post(url, data=body, timeout=120).status_code)
    results.put(statuses)


def normal_latencies(server: Server, bodies: list[str], count: int) -> list[float]:
    latencies = []
    for index in range(count):
        latency, status = server.predict(bodies[index % len(bodies)])
        if status != 200:
            raise SystemExit(f"normal request answered {status}")
        latencies.append(latency)
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", required=True, help="<base>/<model_name> written by sat-tf export")
    parser.add_argument("--images", default=str(DEV_IMAGES))
    parser.add_argument("--normal-requests", type=int, default=100)
    parser.add_argument("--flood", type=int, default=200)
    parser.add_argument("--server-args", default="", help="extra `sat-tf serve` flags, quoted")
    add_output_argument(parser, "serve_abuse.json")
    args = parser.parse_args()
    photos = sorted(Path(args.images).glob("*.jpg"))[:50]
    if not photos:
        raise SystemExit(f"{args.images}: no JPEG photos")
    bodies = [json.dumps({"instances": [{"b64": base64.b64encode(p.read_bytes()).decode()}]}) for p in photos]
    huge = json.dumps({"instances": [{"b64": base64.b64encode(_huge_png()).decode()}]})
    malformed = ['{"signature_name": ["x"], "instances": []}', "not json", '{"instances": [{"b64": "%%"}]}']
    server = Server(args.model_dir, args.server_args.split())
    report = {"machine": describe_machine(), "command": " ".join(["python", *sys.argv]), "huge_png_bytes": len(huge)}
    try:
        server.predict(bodies[0])  # warm-up
        alone = normal_latencies(server, bodies, args.normal_requests)
        report["alone"] = _percentiles(alone)

        stop, results = multiprocessing.Event(), multiprocessing.Queue()
        attackers = [
            multiprocessing.Process(target=_send_until_stopped, args=(f"{server.base}:predict", huge, stop, results))
            for _ in range(4)
        ]
        for attacker in attackers:
            attacker.start()
        time.sleep(1.0)
        during = normal_latencies(server, bodies, args.normal_requests)
        stop.set()
        huge_statuses = [status for _ in attackers for status in results.get(timeout=300)]
        for attacker in attackers:
            attacker.join()
        report["with_4_huge_png_clients"] = {
            **_percentiles(during),
            "huge_requests": len(huge_statuses),
            "huge_statuses": sorted(set(huge_statuses)),
        }
        report["p99_ratio"] = report["with_4_huge_png_clients"]["p99_ms"] / report["alone"]["p99_ms"]

        flood_start = time.perf_counter()
        first_503 = []

        def flood_one(index: int):
            latency, status = server.predict(bodies[index % len(bodies)])
            if status == 503 and not first_503:
                first_503.append(time.perf_counter() - flood_start)
            return latency, status

        with concurrent.futures.ThreadPoolExecutor(args.flood) as pool:
            results = list(pool.map(flood_one, range(args.flood)))
        admitted = [latency for latency, status in results if status == 200]
        report["flood"] = {
            "requests": args.flood,
            "admitted_count": len(admitted),
            "refused_503": sum(status == 503 for _, status in results),
            "other_statuses": sorted({status for _, status in results} - {200, 503}),
            "first_503_after_s": first_503[0] if first_503 else None,
            "refused_p99_ms": _percentiles([lat for lat, s in results if s == 503] or [0.0])["p99_ms"],
            "admitted_latency": _percentiles(admitted) if admitted else None,
        }

        mixed = [*bodies[:8], huge, *malformed]
        rng = np.random.default_rng(0)
        rss = {}
        picks = rng.integers(len(mixed), size=2000)
        for done, total in ((0, 200), (200, 2000)):
            with concurrent.futures.ThreadPoolExecutor(8) as pool:
                list(pool.map(lambda i: server.predict(mixed[picks[i]]), range(done, total)))
            rss[f"after_{total}"] = _rss_mb(server.process.pid)
        report["rss_mb"] = rss
        report["rss_ratio"] = rss["after_2000"] / rss["after_200"]
    finally:
        server.close()
    report["goals"] = {
        "p99_with_huge_images_within_2x": report["p99_ratio"] <= 2.0,
        "first_503_within_1s": (report["flood"]["first_503_after_s"] or 99) <= 1.0,
        "rss_plateaus_within_1.2x": report["rss_ratio"] <= 1.2,
    }
    print(json.dumps(report, indent=2))
    write_json_atomic(args.output, report)


if __name__ == "__main__":
    main()
