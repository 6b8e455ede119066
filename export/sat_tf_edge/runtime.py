"""Captioning on a device without TensorFlow: LiteRT + numpy + Pillow only.

Reads what `sat-tf export --tflite-dir DIR` writes: `image_encoder.tflite` (signature "encode"),
`decoder_step.tflite` (signature "step") and `sat_tf_edge.json` (`EdgeManifest`). Images follow
the one image contract (`sat_tf_edge.images`) on the host (decoding is not a TFLite builtin);
the encoder runs once per image and the decoder step once per word, with greedy or beam search
in numpy.

Example:
    >>> from sat_tf_edge import EdgeCaptioner
    >>> captioner = EdgeCaptioner("edge_model_dir")
    >>> captioner.caption("photo.jpg").text                 # greedy
    >>> captioner.caption("photo.jpg", beam_size=3).text

On Android/iOS, the same two files and signatures run with the LiteRT interpreter
(`Interpreter.getSignatureRunner("encode")` / `("step")`); port `caption_greedy` (15 lines).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from sat_tf_edge.images import load_image
from sat_tf_edge.manifest import MANIFEST_FILE, EdgeManifest


@dataclasses.dataclass
class EdgeCaption:
    """One caption: its text, token ids (without <start>, <end> included when emitted), the
    log-probability of each token, and the attention map [T, L] of each step."""

    text: str
    tokens: list[int]
    log_probs: list[float]
    alphas: np.ndarray
    score: float


class EdgeCaptioner:
    """Greedy and beam-search captioning with the two TFLite files.

    Args:
        model_dir: folder with sat_tf_edge.json and the two .tflite files.
        num_threads: LiteRT CPU threads.
    """

    def __init__(self, model_dir: str | Path, num_threads: int | None = None):
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as exc:  # pragma: no cover - depends on the device
            raise ImportError("the edge runtime needs `pip install ai-edge-litert numpy pillow`") from exc

        model_dir = Path(model_dir)
        self.manifest = EdgeManifest.read(model_dir / MANIFEST_FILE)
        self.vocabulary = self.manifest.vocabulary
        ids = self.manifest.special_ids
        self.pad_id, self.start_id, self.end_id = ids["pad"], ids["start"], ids["end"]
        self.image_size = int(self.manifest.image_size)
        self.max_length = int(self.manifest.max_length)
        files = self.manifest.files
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
        pixels = image if isinstance(image, np.ndarray) else load_image(image, self.image_size)[np.newaxis]
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
