"""`sat-tf-edge MODEL_DIR photo.jpg ...`: caption images with the exported TFLite pair."""

from __future__ import annotations

import argparse
import json
import sys

from sat_tf_edge.confidence import confidence_text, shown_text
from sat_tf_edge.images import ImageDecodeError
from sat_tf_edge.manifest import ManifestError
from sat_tf_edge.runtime import EdgeCaptioner


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="sat-tf-edge", description="Caption images with sat_tf's TFLite models (no TensorFlow)."
    )
    parser.add_argument("model_dir", help="folder with sat_tf_edge.json and the two .tflite files")
    parser.add_argument("images", nargs="+")
    parser.add_argument(
        "--beam-size",
        type=int,
        default=None,
        help="default: the manifest's decoding settings (as `sat-tf caption` decodes)",
    )
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", action="store_true", help="one JSON object per image")
    parser.add_argument(
        "--hide-not-sure",
        action="store_true",
        help="print 'not sure what this is' instead of a caption the model is not sure of (for alt text, "
        "where no caption beats a wrong one); by default every caption is printed, marked when not sure",
    )
    args = parser.parse_args(argv)
    try:
        captioner = EdgeCaptioner(args.model_dir, args.threads)
    except (ManifestError, ValueError) as exc:
        print(f"sat-tf-edge: error: {exc}", file=sys.stderr)
        return 2
    status = 0
    for path in args.images:
        try:
            result = captioner.caption(path, beam_size=args.beam_size)
        except ImageDecodeError as exc:
            print(f"sat-tf-edge: error: {exc}", file=sys.stderr)
            status = 2
            continue
        tags = [(tag.word, tag.probability) for tag in result.tags]
        if args.json:
            record = {"image": path, "caption": result.text, "tokens": result.tokens, "score": result.score}
            seen = [{"word": word, "probability": probability} for word, probability in tags]
            print(json.dumps({**record, "confidence": result.confidence, "not_sure": result.not_sure, "tags": seen}))
        else:
            text = shown_text(result.text, result.not_sure, tags, hide_when_not_sure=args.hide_not_sure)
            confidence = confidence_text(result.confidence, result.not_sure, [] if args.hide_not_sure else tags)
            print(f"{path}\t{text}\t{confidence}")
    return status


if __name__ == "__main__":
    sys.exit(main())
