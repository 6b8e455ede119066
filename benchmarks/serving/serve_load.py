"""Load test of `sat-tf serve` over loopback: concurrent clients, throughput, p50/p99 latency, errors.

Starts the server on a free port in a subprocess (waitress), waits until the model status is
AVAILABLE, then runs `--clients` threads sending `--requests` predict calls in total (one JPEG
per request, TF Serving's {"instances": [{"b64": ...}]} body), with a bad request (invalid base64)
after every 20th good one to show the server keeps serving. Each `--max-batch-size` value is a
separate server run on the same machine: 1 is the server without batching (one graph call per
request), the default 16 batches concurrent requests.

    python -m benchmarks.serving.serve_load --model-dir serving/sat_tf [--images DIR] [--clients 8] [--requests 400]
        [--max-batch-size 1 16]
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import requests

from benchmarks.common import DATA, add_output_argument
from sat_tf.utils.cpu import describe_machine

DEV_IMAGES = DATA / "flickr8k" / "images"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", required=True, help="<base>/<model_name> written by sat-tf export")
    parser.add_argument("--images", default=str(DEV_IMAGES))
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--max-batch-size", type=int, nargs="+", default=[1, 16])
    parser.add_argument(
        "--num-batch-threads",
        type=int,
        nargs="+",
        default=[2],
        help="each value is a run for every batched (max batch size > 1) setting",
    )
    add_output_argument(parser, "serve_load.json")
    args = parser.parse_args()
    images = sorted(Path(args.images).glob("*.jpg"))[:50]
    bodies = [json.dumps({"instances": [{"b64": base64.b64encode(p.read_bytes()).decode()}]}) for p in images]
    runs = {}
    for size in args.max_batch_size:
        for threads in args.num_batch_threads if size > 1 else [1]:
            runs[f"max_batch_size={size}, num_batch_threads={threads}"] = load_test(args, bodies, size, threads)
    report = {
        "machine": describe_machine(),
        "command": " ".join(["python", *sys.argv]),
        "clients": args.clients,
        "requests": args.requests,
        "runs": runs,
    }
    print(json.dumps(report, indent=2))
    from sat_tf.utils.atomic import write_json_atomic

    write_json_atomic(args.output, report)


def load_test(args, bodies: list[str], max_batch_size: int, num_batch_threads: int = 1) -> dict:
    """One server run at this batching setting: throughput, latency percentiles, errors."""
    name = Path(args.model_dir).name
    port = _free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sat_tf.cli",
            "serve",
            "--model-dir",
            args.model_dir,
            "--port",
            str(port),
            "--max-batch-size",
            str(max_batch_size),
            "--num-batch-threads",
            str(num_batch_threads),
        ],
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    base = f"http://127.0.0.1:{port}/v1/models/{name}"
    try:
        deadline = time.time() + 120
        while True:
            try:
                if requests.get(base, timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if time.time() > deadline or server.poll() is not None:
                raise SystemExit("server did not come up")
            time.sleep(0.5)
        requests.post(f"{base}:predict", data=bodies[0], timeout=60)  # warm-up (graph tracing)

        def one(index: int) -> tuple[float, int, int]:
            start = time.perf_counter()
            response = requests.post(f"{base}:predict", data=bodies[index % len(bodies)], timeout=60)
            latency = 1000 * (time.perf_counter() - start)
            bad_status = 0
            if index % 20 == 19:
                bad_status = requests.post(
                    f"{base}:predict", data='{"instances": [{"b64": "%%"}]}', timeout=60
                ).status_code
            return latency, response.status_code, bad_status

        start = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(args.clients) as pool:
            results = list(pool.map(one, range(args.requests)))
        seconds = time.perf_counter() - start
    finally:
        server.terminate()
        server.wait(timeout=30)
    latencies = sorted(r[0] for r in results)
    return {
        "requests_per_second": args.requests / seconds,
        "p50_ms": statistics.median(latencies),
        "p99_ms": latencies[int(0.99 * (len(latencies) - 1))],
        "errors": sum(r[1] != 200 for r in results),
        "bad_requests_sent": sum(r[2] != 0 for r in results),
        "bad_requests_answered_400": sum(r[2] == 400 for r in results),
    }


if __name__ == "__main__":
    main()
