"""Captioning on a device without TensorFlow: LiteRT + numpy + Pillow only.

Reads what `sat-tf export --tflite-dir DIR` writes: `image_encoder.tflite` (signature "encode"),
`decoder_step.tflite` (signature "step") and `sat_tf_edge.json` (`EdgeManifest`). Images follow
the one image contract (`sat_tf_edge.images`) on the host (decoding is not a TFLite builtin);
the encoder runs once per image and the decoder step once per word, with the library's beam
search in numpy (beam 1 is greedy), under the decoding settings the manifest carries (beam size,
length penalty, `<unk>` rule, n-gram and content-word blocking), so a device captions as `sat-tf caption` does.

Example:
    >>> from sat_tf_edge import EdgeCaptioner
    >>> captioner = EdgeCaptioner("edge_model_dir")
    >>> captioner.caption("photo.jpg").text                 # the manifest's decoding settings
    >>> captioner.caption("photo.jpg", beam_size=1).text    # greedy

On Android/iOS, the same two files and signatures run with the LiteRT interpreter
(`Interpreter.getSignatureRunner("encode")` / `("step")`); port `caption_beam`.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np

from sat_tf_edge.calibration import caption_signals
from sat_tf_edge.confidence import caption_confidence, caption_record
from sat_tf_edge.images import load_image
from sat_tf_edge.manifest import MANIFEST_FILE, EdgeManifest
from sat_tf_edge.tags import Tag
from sat_tf_edge.text import caption_text


def repeated_ngram_words(tokens: list[int], n: int) -> list[int]:
    """The words that would complete an n-gram `tokens` already holds (as the library's loop)."""
    if n <= 0 or len(tokens) < n - 1:
        return []
    suffix = tokens[len(tokens) - n + 1 :] if n > 1 else []
    return [tokens[j + n - 1] for j in range(len(tokens) - n + 1) if tokens[j : j + n - 1] == suffix]


@dataclasses.dataclass
class EdgeCaption:
    """One caption: its text, token ids (without <start>, <end> included when emitted), the
    log-probability of each token, the attention map [T, L] of each step, the beam's ranking score,
    the k-best token lists (best first) with their summed log-probabilities, the photo's h0, its
    confidence (the library's: calibrated when the manifest carries a calibration, else the
    geometric-mean token probability) and whether that is below the model's "not sure" threshold."""

    text: str
    tokens: list[int]
    log_probs: list[float]
    alphas: np.ndarray
    score: float
    candidates: list[list[int]] = dataclasses.field(default_factory=list)
    candidate_log_probs: list[float] = dataclasses.field(default_factory=list)
    photo_state: np.ndarray | None = None
    confidence: float = math.nan  # NaN: the geometric-mean token probability
    not_sure: bool = False
    tags: list[Tag] = dataclasses.field(default_factory=list)  # what the photo may show (ImageNet tags)

    def __post_init__(self):
        if math.isnan(self.confidence):
            self.confidence = float(caption_confidence(sum(self.log_probs), len(self.tokens)))

    def record(self, image: str, vocabulary: list[str]) -> dict:
        """The record `sat-tf caption` writes for a photo (`sat_tf_edge.confidence.caption_record`);
        the tags are kept for a caption the model is not sure of, as there."""
        candidates = [caption_text(tokens, vocabulary) for tokens in self.candidates]
        tags = self.tags if self.not_sure else []
        return caption_record(image, self.text, sum(self.log_probs), self.confidence, self.not_sure, candidates, tags)

    def signals(self, novelty, end_id: int) -> dict[str, np.ndarray]:
        """The calibration's signals of this caption (`sat_tf_edge.calibration.caption_signals`)."""
        if self.photo_state is None:
            raise ValueError("the photo's state was not recorded (caption with EdgeCaptioner.caption_beam)")
        steps = max(len(tokens) for tokens in self.candidates)
        padded = np.zeros((1, len(self.candidates), steps), np.int64)
        for rank, tokens in enumerate(self.candidates):
            padded[0, rank, : len(tokens)] = tokens
        return caption_signals(
            np.array([self.log_probs]),
            np.array([len(self.tokens)]),
            padded,
            np.array([[len(tokens) for tokens in self.candidates]]),
            np.array([self.candidate_log_probs]),
            self.alphas[np.newaxis],
            self.photo_state[np.newaxis],
            novelty,
            end_id,
        )


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
        self.calibration = self.manifest.calibration()
        self.vocabulary = self.manifest.vocabulary
        ids = self.manifest.special_ids
        self.pad_id, self.start_id, self.end_id, self.unknown_id = ids["pad"], ids["start"], ids["end"], ids["unknown"]
        self.image_size = int(self.manifest.image_size)
        self.max_length = int(self.manifest.max_length)
        files = self.manifest.files
        self._encoder = Interpreter(model_path=str(model_dir / files["encoder"]), num_threads=num_threads)
        self._decoder = Interpreter(model_path=str(model_dir / files["decoder"]), num_threads=num_threads)
        self.encode = self._encoder.get_signature_runner("encode")
        self._step = self._decoder.get_signature_runner("step")
        self.step_batch = self.manifest.decoder_batch  # None: the step takes any batch
        self._content_words = np.zeros(len(self.vocabulary), bool)  # what no_repeat_content_words blocks
        self._content_words[list(self.manifest.content_word_ids())] = True

    def step(self, **inputs) -> dict:
        """One decoder step for k rows; a step exported with a fixed batch gets its rows padded
        with copies of the last and returns the first k."""
        rows = len(inputs["previous_token"])
        if self.step_batch is None or rows == self.step_batch:
            return self._step(**inputs)
        if rows > self.step_batch:
            raise ValueError(f"this export decodes at most {self.step_batch} beams (its decoder_batch); asked {rows}")
        padding = self.step_batch - rows
        padded = {key: np.concatenate([value, np.repeat(value[-1:], padding, axis=0)]) for key, value in inputs.items()}
        return {key: value[:rows] for key, value in self._step(**padded).items()}

    # ----- the two models -------------------------------------------------------------------------
    def encode_image(self, image: np.ndarray) -> dict:
        """float32 [1, S, S, 3] -> per-image step inputs and initial state."""
        return self.encode(image=image.astype(np.float32))

    def caption(
        self,
        image,
        beam_size: int | None = None,
        length_penalty: float | None = None,
        forbid_unknown: bool | None = None,
        no_repeat_ngram_size: int | None = None,
        no_repeat_content_words: bool | None = None,
    ) -> EdgeCaption:
        """Captions a path, bytes, or a float32 [1, S, S, 3] array; a setting left None is the
        manifest's (`EdgeManifest.decoding`), whose threshold also decides `not_sure`."""
        settings = dict(self.manifest.decoding)
        not_sure_below = settings.pop("not_sure_below")
        given = dict(
            beam_size=beam_size,
            length_penalty=length_penalty,
            forbid_unknown=forbid_unknown,
            no_repeat_ngram_size=no_repeat_ngram_size,
            no_repeat_content_words=no_repeat_content_words,
        )
        settings.update({key: value for key, value in given.items() if value is not None})
        pixels = image if isinstance(image, np.ndarray) else load_image(image, self.image_size)[np.newaxis]
        encoded = self.encode_image(pixels)
        caption = self.caption_beam(encoded, **settings)
        if "class_probabilities" in encoded:  # the encoder file carries the ImageNet classifier
            caption.tags = self.manifest.tags(encoded["class_probabilities"])[0]
        if self.calibration is not None:
            signals = caption.signals(self.calibration.novelty, self.end_id)
            caption.confidence = float(self.calibration.confidence(signals)[0])
        caption.not_sure = caption.confidence < not_sure_below
        return caption

    def caption_beam(
        self,
        encoded: dict,
        beam_size: int = 1,
        length_penalty: float = 0.0,
        forbid_unknown: bool = False,
        no_repeat_ngram_size: int = 0,
        no_repeat_content_words: bool = False,
    ) -> EdgeCaption:
        """The library's beam search (`sat_tf.inference.BeamSampler`; beam 1 is greedy): finished
        beams keep their score and compete; the best is ranked by log p / length**length_penalty."""
        k = beam_size
        once_only = self._content_words if no_repeat_content_words else np.zeros_like(self._content_words)
        per_image = {
            key: np.repeat(encoded[key], k, axis=0) for key in ("attention_keys", "context_gates", "context_outputs")
        }
        hidden, cell = np.repeat(encoded["hidden"], k, axis=0), np.repeat(encoded["cell"], k, axis=0)
        scores = np.full(k, -np.inf)
        scores[0] = 0.0  # only one live beam at the start
        beams: list[tuple[list[int], list[float], list[np.ndarray]]] = [
            ([], [], []) for _ in range(k)
        ]  # tokens, log-probs, alphas
        finished = np.zeros(k, bool)
        previous = np.full(k, self.start_id, np.int32)
        for _ in range(self.max_length):
            if finished.all():
                break
            out = self.step(**per_image, hidden=hidden, cell=cell, previous_token=previous)
            log_probs = out["log_probs"].astype(np.float64)
            model_log_probs = log_probs.copy()
            vocabulary = log_probs.shape[1]
            if forbid_unknown:
                log_probs[:, self.unknown_id] = -np.inf
            for beam, (tokens, _, _) in enumerate(beams):
                log_probs[beam, repeated_ngram_words(tokens, no_repeat_ngram_size)] = -np.inf
                log_probs[beam, [t for t in tokens if once_only[t]]] = -np.inf  # content words said once
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
                    new_beams.append(
                        (
                            tokens + [int(word)],
                            token_log_probs + [float(model_log_probs[parent, word])],
                            alphas + [out["alpha"][parent]],
                        )
                    )
            finished = finished[parents] | (words == self.end_id)
            scores, beams = candidates[best], new_beams
            hidden, cell, previous = out["hidden"][parents], out["cell"][parents], words.astype(np.int32)
        lengths = np.array([max(len(tokens), 1) for tokens, _, _ in beams], np.float64)
        ranking = scores / lengths**length_penalty if length_penalty else scores
        order = np.argsort(-ranking, kind="stable")  # the first of equals first, as the library's stable sort
        tokens, token_log_probs, alphas = beams[order[0]]
        return EdgeCaption(
            self.text(tokens),
            tokens,
            token_log_probs,
            np.stack(alphas),
            float(ranking[order[0]]),
            candidates=[beams[rank][0] for rank in order],
            candidate_log_probs=[float(sum(beams[rank][1])) for rank in order],
            photo_state=np.asarray(encoded["hidden"][0], np.float64),
        )

    def text(self, tokens: list[int]) -> str:
        return caption_text(tokens, self.vocabulary, self.pad_id, self.start_id, self.end_id)
