"""`sat-tf serve`: an exported SavedModel behind TF Serving's REST API and the captioning page."""

from __future__ import annotations

import argparse

NAME, HELP = "serve", "serve an exported SavedModel with TF Serving's REST API"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from sat_tf.serving.limits import ServingLimits

    parser.add_argument("--model-dir", required=True, help="<dir>/<model-name> (latest version) or a version dir")
    parser.add_argument("--model-name", default=None, help="default: the folder name")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8501)
    parser.add_argument("--max-batch-size", type=int, default=16, help="most images per graph call (default: 16)")
    parser.add_argument(
        "--batch-timeout-ms",
        type=float,
        default=5.0,
        help="how long a request waits for others to share its graph call (default: 5)",
    )
    parser.add_argument(
        "--max-queued-requests",
        type=int,
        default=32,
        help="requests waiting for a graph call beyond this are answered 503 (default: 32)",
    )
    parser.add_argument(
        "--num-batch-threads",
        type=int,
        default=2,
        help="graph calls run at once: one decodes while another encodes (default: 2)",
    )
    parser.add_argument(
        "--max-in-flight",
        type=int,
        default=ServingLimits.max_in_flight,
        help=f"requests admitted at once; more get 503 + Retry-After at once (default: {ServingLimits.max_in_flight})",
    )
    parser.add_argument(
        "--max-image-pixels",
        type=int,
        default=ServingLimits.max_image_pixels,
        help="largest image (width x height), checked from its header before decoding "
        f"(default: {ServingLimits.max_image_pixels:,})",
    )
    parser.add_argument(
        "--image-workers",
        type=int,
        default=ServingLimits.image_workers,
        help=f"threads that check and decode request images (default: {ServingLimits.image_workers})",
    )
    parser.add_argument(
        "--request-timeout-s",
        type=float,
        default=ServingLimits.request_timeout_s,
        help="deadline for a request's image checks and its place in a batch; 503 beyond "
        f"(default: {ServingLimits.request_timeout_s:g})",
    )
    parser.add_argument(
        "--refusal-delay-s",
        type=float,
        default=ServingLimits.refusal_delay_s,
        help="a request refused for its size waits this long for its answer, so a client looping on huge images "
        f"costs little (default: {ServingLimits.refusal_delay_s:g}; 0: answer at once)",
    )
    parser.add_argument(
        "--delayed-refusals",
        type=int,
        default=ServingLimits.delayed_refusals,
        help=f"refusals delayed at once; beyond, answered at once (default: {ServingLimits.delayed_refusals})",
    )


def run(args) -> None:
    from sat_tf.serving.limits import ServingLimits
    from sat_tf.serving.server import serve

    limits = ServingLimits(
        max_image_pixels=args.max_image_pixels,
        image_workers=args.image_workers,
        request_timeout_s=args.request_timeout_s,
        max_in_flight=args.max_in_flight,
        refusal_delay_s=args.refusal_delay_s,
        delayed_refusals=args.delayed_refusals,
    )
    serve(
        args.model_dir,
        args.host,
        args.port,
        args.model_name,
        limits=limits,
        max_batch_size=args.max_batch_size,
        batch_timeout_ms=args.batch_timeout_ms,
        max_queued_requests=args.max_queued_requests,
        num_batch_threads=args.num_batch_threads,
    )
