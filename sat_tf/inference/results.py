"""What decoding returns: the k candidate captions of every image, and the best one of each."""

from __future__ import annotations

import dataclasses

import numpy as np

from sat_tf_edge.calibration import ConfidenceCalibration, PhotoNovelty, caption_signals
from sat_tf_edge.confidence import NOT_SURE_BELOW, caption_confidence

__all__ = ["NOT_SURE_BELOW", "CaptionCandidates", "DecodedCaptions", "caption_confidence"]


@dataclasses.dataclass
class DecodedCaptions:
    """One caption per image for a batch of B images, T = steps decoded (<= max_length).

    tokens: int32 [B, T], `<pad>` after each caption's `<end>`.
    log_probs: float32 [B, T], log-probability of each emitted token (0 after `<end>`).
    alphas: float32 [B, T, L], attention of the step that emitted each token.
    lengths: int32 [B], tokens emitted including `<end>` (max_length if it never ended).
    texts: detokenized captions.
    """

    tokens: np.ndarray
    log_probs: np.ndarray
    alphas: np.ndarray
    lengths: np.ndarray
    texts: list[str]

    def words(self, index: int) -> list[str]:
        return self.texts[index].split()

    @property
    def confidence(self) -> np.ndarray:
        """float [B]: each caption's geometric-mean token probability, exp(log p / length), in (0, 1]
        (see `caption_confidence`)."""
        return caption_confidence(self.log_probs.sum(axis=-1), self.lengths)


@dataclasses.dataclass
class CaptionCandidates:
    """k candidate captions per image (best first for beam search, draw order for sampling).

    B images, k candidates, T steps. tokens: int32 [B, k, T] (`<pad>` after `<end>`); scores:
    float32 [B, k], the ranking score (sum of log-probs, divided by length**length_penalty when
    normalising); log_probs: float32 [B, k], the plain sum of log-probs; token_log_probs: float32
    [B, k, T], log-probability of each emitted token under the model; alphas: float32
    [B, k, T, L]; lengths: int32 [B, k] (tokens including `<end>`); texts: candidate captions per
    image; photo_states: float32 [B, H], the decoder's initial hidden state of each photo (for the
    calibrated confidence's novelty; None when not recorded); guided: bool [B], which captions tag
    guidance constrained (None when decoded without it).
    """

    tokens: np.ndarray
    scores: np.ndarray
    log_probs: np.ndarray
    token_log_probs: np.ndarray
    alphas: np.ndarray
    lengths: np.ndarray
    texts: list[list[str]]
    photo_states: np.ndarray | None = None
    guided: np.ndarray | None = None

    @property
    def best_texts(self) -> list[str]:
        return [candidates[0] for candidates in self.texts]

    def best(self) -> DecodedCaptions:
        """The first candidate of each image, in the one-caption-per-image form."""
        return DecodedCaptions(
            tokens=self.tokens[:, 0],
            log_probs=self.token_log_probs[:, 0],
            alphas=self.alphas[:, 0],
            lengths=self.lengths[:, 0],
            texts=self.best_texts,
        )

    def confidence_signals(self, novelty: PhotoNovelty | None, end_id: int) -> dict[str, np.ndarray]:
        """The signals of each best caption the calibrated confidence reads
        (`sat_tf_edge.calibration.caption_signals`; without recorded photo states, the photo
        signals are absent)."""
        best = self.best()
        states, novelty = (self.photo_states, novelty) if self.photo_states is not None else (None, None)
        return caption_signals(
            best.log_probs,
            best.lengths,
            self.tokens,
            self.lengths,
            self.log_probs,
            best.alphas,
            states,
            novelty,
            end_id,
        )

    def confidence(self, calibration: ConfidenceCalibration | None, end_id: int) -> np.ndarray:
        """float [B]: each best caption's confidence: the calibrated one when the model has a
        calibration, else the geometric-mean token probability (`DecodedCaptions.confidence`)."""
        if calibration is None:
            return self.best().confidence
        return calibration.confidence(self.confidence_signals(calibration.novelty, end_id))

    def first(self, k: int, images: int | None = None) -> "CaptionCandidates":
        """The first k candidates of each image (of the first `images` images, default all)."""
        n = len(self.texts) if images is None else images
        return CaptionCandidates(
            self.tokens[:n, :k],
            self.scores[:n, :k],
            self.log_probs[:n, :k],
            self.token_log_probs[:n, :k],
            self.alphas[:n, :k],
            self.lengths[:n, :k],
            [texts[:k] for texts in self.texts[:n]],
            None if self.photo_states is None else self.photo_states[:n],
            None if self.guided is None else self.guided[:n],
        )

    def with_rows(self, rows: list[int], other: "CaptionCandidates") -> "CaptionCandidates":
        """These candidates with images `rows` replaced by `other`'s (same k), steps padded."""
        merged = CaptionCandidates.concatenate([self, other])  # pads both to the longer step axis
        order = list(range(len(self.texts)))
        for position, row in enumerate(rows):
            order[row] = len(self.texts) + position
        return CaptionCandidates(
            merged.tokens[order],
            merged.scores[order],
            merged.log_probs[order],
            merged.token_log_probs[order],
            merged.alphas[order],
            merged.lengths[order],
            [merged.texts[i] for i in order],
            None if merged.photo_states is None else merged.photo_states[order],
            None if merged.guided is None else merged.guided[order],
        )

    @staticmethod
    def concatenate(parts: list["CaptionCandidates"]) -> "CaptionCandidates":
        """Joins the results of consecutive batches, padding the step axis to the longest."""
        steps = max(p.tokens.shape[2] for p in parts)

        def pad(array):
            widths = [(0, 0), (0, 0), (0, steps - array.shape[2])] + [(0, 0)] * (array.ndim - 3)
            return np.pad(array, widths)

        return CaptionCandidates(
            tokens=np.concatenate([pad(p.tokens) for p in parts]),
            scores=np.concatenate([p.scores for p in parts]),
            log_probs=np.concatenate([p.log_probs for p in parts]),
            token_log_probs=np.concatenate([pad(p.token_log_probs) for p in parts]),
            alphas=np.concatenate([pad(p.alphas) for p in parts]),
            lengths=np.concatenate([p.lengths for p in parts]),
            texts=[t for p in parts for t in p.texts],
            photo_states=_joined([p.photo_states for p in parts]),
            guided=_joined([p.guided for p in parts]),
        )


def _joined(arrays: list) -> np.ndarray | None:
    """The parts' per-image arrays end to end; None when a part has none."""
    return None if any(a is None for a in arrays) else np.concatenate(arrays)
