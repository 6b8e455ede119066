"""Caption images on a device without TensorFlow: LiteRT + numpy + Pillow only.

Reads what `sat-tf export --tflite-dir DIR` writes: `image_encoder.tflite` (signature "encode"),
`decoder_step.tflite` (signature "step") and `sat_tf_edge.json` (vocabulary, special ids, image
size, max length). JPEG/PNG decoding and resizing happen here on the host (decoding is not a
TFLite builtin); the encoder runs once per image and the decoder step once per word, with greedy
or beam search in numpy.

Library:
    >>> from edge_runtime import EdgeCaptioner
    >>> captioner = EdgeCaptioner("edge_model_dir")
    >>> captioner.caption("photo.jpg").text                 # greedy
    >>> captioner.caption("photo.jpg", beam_size=3).text

Command line:
    python export/edge_runtime.py edge_model_dir photo.jpg [more.jpg ...] [--beam-size 3] [--json]

On Android/iOS, the same two files and signatures run with the LiteRT interpreter
(`Interpreter.getSignatureRunner("encode")` / `("step")`); port `caption_greedy` (15 lines).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

try:
    from ai_edge_litert.interpreter import Interpreter
except ImportError as exc:  # pragma: no cover - depends on the device
    raise ImportError("the edge runtime needs `pip install ai-edge-litert numpy pillow`") from exc

MAX_IMAGE_PIXELS = 64_000_000  # refuse decompression bombs (same limit as sat_tf.data.images)


@dataclasses.dataclass
class EdgeCaption:
    """One caption: its text, token ids (without <start>, <end> included when emitted), the
    log-probability of each token, and the attention map [T, L] of each step."""

    text: str
    tokens: list[int]
    log_probs: list[float]
    alphas: np.ndarray
    score: float


def load_rgb(path_or_bytes, size: int) -> np.ndarray:
    """Decodes an image file (or bytes) to float32 [1, size, size, 3] in 0..255, like sat_tf's
    Pillow path (grayscale/RGBA/palette -> RGB, bilinear resize)."""
    import io

    Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
    source = io.BytesIO(path_or_bytes) if isinstance(path_or_bytes, (bytes, bytearray)) else path_or_bytes
    try:
        with Image.open(source) as image:
            image.load()
            if image.mode in ("RGBA", "LA", "P"):
                image = image.convert("RGBA")
                background = Image.new("RGBA", image.size, (0, 0, 0, 255))
                image = Image.alpha_composite(background, image)
            if image.mode == "I;16" or image.mode == "I":
                pixels = np.asarray(image, np.float64)
                image = Image.fromarray((pixels / max(pixels.max(), 1) * 255).astype(np.uint8))
            rgb = image.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        name = "<bytes>" if isinstance(path_or_bytes, (bytes, bytearray)) else str(path_or_bytes)
        raise ValueError(f"{name}: not a readable image ({exc})") from exc
    if rgb.size != (size, size):
        rgb = rgb.resize((size, size), Image.BILINEAR)
    return np.asarray(rgb, np.float32)[np.newaxis]


class EdgeCaptioner:
    """Greedy and beam-search captioning with the two TFLite files.

    Args:
        model_dir: folder with sat_tf_edge.json and the two .tflite files.
        num_threads: LiteRT CPU threads.
    """

    def __init__(self, model_dir: str | Path, num_threads: int | None = None):
        model_dir = Path(model_dir)
        manifest_path = model_dir / "sat_tf_edge.json"
        try:
            self.manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ValueError(f"{manifest_path}: not a sat_tf edge manifest ({exc})") from exc
        self.vocabulary = self.manifest["vocabulary"]
        ids = self.manifest["special_ids"]
        self.pad_id, self.start_id, self.end_id = ids["pad"], ids["start"], ids["end"]
        self.image_size = int(self.manifest["image_size"])
        self.max_length = int(self.manifest["max_length"])
        files = self.manifest["files"]
        self._encoder = Interpreter(model_path=str(model_dir / files["encoder"]), num_threads=num_threads)
        self._decoder = Interpreter(model_path=str(model_dir / files["decoder"]), num_threads=num_threads)
        self.encode = self._encoder.get_signature_runner("encode")
        self.step = self._decoder.get_signature_runner("step")

    # ----- the two models -------------------------------------------------------------------------
    def encode_image(self, image: np.ndarray) -> dict:
        """float32 [1, S, S, 3] -> per-image step inputs and initial state."""
        return self.encode(image=image.astype(np.float32))

    def caption(self, image, beam_size: int = 1) -> EdgeCaption:
        """Captions a path, bytes, or a float32 [1, S, S, 3] array."""
        pixels = image if isinstance(image, np.ndarray) else load_rgb(image, self.image_size)
        encoded = self.encode_image(pixels)
        return self.caption_greedy(encoded) if beam_size <= 1 else self.caption_beam(encoded, beam_size)

    def caption_greedy(self, encoded: dict) -> EdgeCaption:
        per_image = {k: encoded[k] for k in ("attention_keys", "context_gates", "context_outputs")}
        hidden, cell = encoded["hidden"], encoded["cell"]
        token, tokens, log_probs, alphas = self.start_id, [], [], []
        for _ in range(self.max_length):
            out = self.step(**per_image, hidden=hidden, cell=cell, previous_token=np.array([token], np.int32))
            hidden, cell = out["hidden"], out["cell"]
            token = int(np.argmax(out["log_probs"][0]))
            tokens.append(token)
            log_probs.append(float(out["log_probs"][0, token]))
            alphas.append(out["alpha"][0])
            if token == self.end_id:
                break
        return EdgeCaption(self.text(tokens), tokens, log_probs, np.stack(alphas), float(sum(log_probs)))

    def caption_beam(self, encoded: dict, beam_size: int) -> EdgeCaption:
        """Beam search ranked by total log-probability; finished beams keep their score and compete."""
        k = beam_size
        per_image = {key: np.repeat(encoded[key], k, axis=0)
                     for key in ("attention_keys", "context_gates", "context_outputs")}
        hidden, cell = np.repeat(encoded["hidden"], k, axis=0), np.repeat(encoded["cell"], k, axis=0)
        scores = np.full(k, -np.inf)
        scores[0] = 0.0  # only one live beam at the start
        beams = [([], [], []) for _ in range(k)]  # tokens, log-probs, alphas
        finished = np.zeros(k, bool)
        previous = np.full(k, self.start_id, np.int32)
        for _ in range(self.max_length):
            if finished.all():
                break
            out = self.step(**per_image, hidden=hidden, cell=cell, previous_token=previous)
            log_probs = out["log_probs"].astype(np.float64)
            vocabulary = log_probs.shape[1]
            log_probs[finished] = -np.inf
            log_probs[finished, self.pad_id] = 0.0  # a finished beam continues with <pad> at no cost
            candidates = (scores[:, None] + log_probs).ravel()
            best = np.argsort(-candidates, kind="stable")[:k]
            parents, words = best // vocabulary, best % vocabulary
            new_beams = []
            for parent, word in zip(parents, words):
                tokens, token_log_probs, alphas = beams[parent]
                if finished[parent]:
                    new_beams.append(beams[parent])
                else:
                    new_beams.append((tokens + [int(word)], token_log_probs + [float(log_probs[parent, word])],
                                      alphas + [out["alpha"][parent]]))
            finished = finished[parents] | (words == self.end_id)
            scores, beams = candidates[best], new_beams
            hidden, cell, previous = out["hidden"][parents], out["cell"][parents], words.astype(np.int32)
        tokens, token_log_probs, alphas = beams[int(np.argmax(scores))]
        return EdgeCaption(self.text(tokens), tokens, token_log_probs, np.stack(alphas), float(np.max(scores)))

    def text(self, tokens: list[int]) -> str:
        words = []
        for token in tokens:
            if token == self.end_id:
                break
            if token not in (self.pad_id, self.start_id):
                words.append(self.vocabulary[token])
        return " ".join(words)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Caption images with sat_tf's TFLite models (no TensorFlow).")
    parser.add_argument("model_dir")
    parser.add_argument("images", nargs="+")
    parser.add_argument("--beam-size", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", action="store_true", help="one JSON object per image")
    args = parser.parse_args(argv)
    try:
        captioner = EdgeCaptioner(args.model_dir, args.threads)
    except (ValueError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    status = 0
    for path in args.images:
        try:
            result = captioner.caption(path, beam_size=args.beam_size)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            status = 2
            continue
        if args.json:
            print(json.dumps({"image": path, "caption": result.text, "tokens": result.tokens, "score": result.score}))
        else:
            print(f"{path}\t{result.text}")
    return status


if __name__ == "__main__":
    sys.exit(main())
