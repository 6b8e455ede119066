"""The learned confidence: what a caption's decoding and its photo say about whether it is right.

A caption's raw confidence (the geometric-mean token probability, `sat_tf_edge.confidence`) ranks
captions of familiar photos well and says little about photos unlike the training photos. The
calibrated confidence combines measured signals of one caption (`SIGNALS`) in a logistic model
fitted on dev photos (`sat_tf.evaluation.calibration.fit_calibration`, `sat-tf calibrate`): its
value is the estimated probability that the caption is better than the median caption of a dev
set (per-photo CIDEr-D against the human captions).

Every signal comes from what every runtime has, so the library, the SavedModel, the edge runtime
and the browser page compute the same number: the k-best captions of the beam, their token
log-probabilities and attention maps, and the decoder's initial hidden state h0 (an MLP of the
photo's mean annotation: how the decoder sees the photo), whose distance from the training photos'
h0 is the photo's novelty (`PhotoNovelty`, a Gaussian in the top principal directions plus the
energy left outside them).

The shipped form is a few numbers (JSON): the signal names, their means and scales, the weights,
the bias, the novelty's centre, directions and scales, and the "not sure" threshold with what it
promises.

Example:
    >>> calibration = ConfidenceCalibration.from_json(json.load(open("confidence_calibration.json")))
    >>> signals = caption_signals(token_log_probs, lengths, candidate_tokens, candidate_lengths,
    ...                           candidate_log_probs, alphas, photo_states, calibration.novelty, end_id)
    >>> calibration.confidence(signals)        # float [B] in (0, 1)
"""

from __future__ import annotations

import dataclasses

import numpy as np

# The signals a calibration may combine, each a float [B] per caption (NaN where undefined: the
# beam signals of a greedy caption; a calibration reads NaN as the signal's mean).
SIGNALS = (
    "mean_log_prob",  # log of the raw confidence: mean token log-probability, <end> included
    "min_log_prob",  # the least probable token
    "length",  # tokens, <end> included
    "beam_margin",  # mean token log-prob of the best caption minus that of the second
    "beam_agreement",  # share of the best caption's words the other k-best captions also use
    "attention_entropy",  # mean over steps of the attention's entropy / log L (1 = uniform)
    "photo_distance",  # the photo's h0 in the training photos' top principal directions (Mahalanobis^2 / m)
    "photo_residual",  # the energy of h0 outside those directions, per dimension
)


class CalibrationError(ValueError):
    """A calibration file is malformed; the message names the field."""


@dataclasses.dataclass
class PhotoNovelty:
    """How far a photo's h0 is from the training photos': a Gaussian over h0 in its top m principal
    directions (`photo_distance`, the mean squared standardized coordinate) and the squared norm of
    what those directions leave out, per dimension (`photo_residual`).

    Args:
        center: [H], the training photos' mean h0.
        directions: [m, H], orthonormal principal directions.
        scales: [m], the standard deviation of the training photos along each direction.
    """

    center: np.ndarray
    directions: np.ndarray
    scales: np.ndarray

    def __post_init__(self):
        self.center = np.asarray(self.center, np.float64)
        self.directions = np.asarray(self.directions, np.float64).reshape(-1, self.center.shape[0])
        self.scales = np.asarray(self.scales, np.float64)
        if self.scales.shape != (self.directions.shape[0],) or np.any(self.scales <= 0):
            raise CalibrationError("novelty.scales: one positive scale per direction")

    def signals(self, photo_states) -> dict[str, np.ndarray]:
        centered = np.asarray(photo_states, np.float64) - self.center
        coordinates = centered @ self.directions.T
        residual = centered - coordinates @ self.directions
        return {
            "photo_distance": np.mean((coordinates / self.scales) ** 2, axis=-1),
            "photo_residual": np.mean(residual**2, axis=-1),
        }

    def to_json(self) -> dict:
        return {key: np.round(getattr(self, key), 7).tolist() for key in ("center", "directions", "scales")}


def _emitted(lengths, steps: int) -> np.ndarray:
    """bool [..., T]: which steps of each caption emitted a token (<end> included)."""
    return np.arange(steps) < np.asarray(lengths)[..., None]


def beam_agreement(candidate_tokens, candidate_lengths, end_id: int) -> np.ndarray:
    """float [B]: for each other candidate, the share of the best caption's words (its tokens
    without `<end>`) it also contains, averaged over the others; NaN with one candidate."""
    tokens = np.asarray(candidate_tokens)
    lengths = np.maximum(np.asarray(candidate_lengths), 1)
    batch, k, steps = tokens.shape
    if k < 2:
        return np.full(batch, np.nan)
    last_token = tokens[np.arange(batch), 0, lengths[:, 0] - 1]
    best_words = _emitted(lengths[:, 0] - (last_token == end_id), steps)  # [B, T]
    other_tokens = _emitted(lengths[:, 1:], steps)  # [B, k-1, T]
    same = tokens[:, None, 0, :, None] == tokens[:, 1:, None, :]  # [B, k-1, T, T]: best token t = token u
    found = np.any(same & other_tokens[:, :, None, :], axis=-1)  # [B, k-1, T]
    shares = np.sum(found & best_words[:, None], axis=-1) / np.maximum(best_words.sum(-1), 1)[:, None]
    return shares.mean(axis=-1)


def caption_signals(
    token_log_probs,
    lengths,
    candidate_tokens,
    candidate_lengths,
    candidate_log_probs,
    alphas,
    photo_states,
    novelty: PhotoNovelty | None,
    end_id: int,
) -> dict[str, np.ndarray]:
    """Every signal of `SIGNALS` for a batch of B captions.

    Args:
        token_log_probs: [B, T] the best caption's token log-probabilities (0 after `<end>`).
        lengths: [B] its tokens, `<end>` included.
        candidate_tokens: [B, k, T] the k-best captions, best first (k = 1 for greedy).
        candidate_lengths: [B, k].
        candidate_log_probs: [B, k] each candidate's summed token log-probabilities.
        alphas: [B, T, L] the best caption's attention maps.
        photo_states: [B, H] the decoder's initial hidden state of each photo.
        novelty: the training photos' `PhotoNovelty` (None: the two photo signals are NaN).
        end_id: the `<end>` token id (not a word of the agreement).
    """
    log_probs = np.asarray(token_log_probs, np.float64)
    lengths = np.maximum(np.asarray(lengths), 1)
    steps = log_probs.shape[1]
    emitted = _emitted(lengths, steps)
    candidate_lengths = np.maximum(np.asarray(candidate_lengths), 1)
    per_token = np.asarray(candidate_log_probs, np.float64) / candidate_lengths
    alphas = np.asarray(alphas, np.float64)[:, :steps]
    entropy = -np.sum(alphas * np.log(np.maximum(alphas, 1e-12)), axis=-1) / np.log(alphas.shape[-1])
    signals = {
        "mean_log_prob": log_probs.sum(-1) / lengths,
        "min_log_prob": np.where(emitted, log_probs, np.inf).min(-1),
        "length": lengths.astype(np.float64),
        "beam_margin": per_token[:, 0] - per_token[:, 1] if per_token.shape[1] > 1 else np.full(len(lengths), np.nan),
        "beam_agreement": beam_agreement(candidate_tokens, candidate_lengths, end_id),
        "attention_entropy": np.sum(entropy * emitted, -1) / lengths,
    }
    if novelty is None:
        signals.update(photo_distance=np.full(len(lengths), np.nan), photo_residual=np.full(len(lengths), np.nan))
    else:
        signals.update(novelty.signals(photo_states))
    return signals


@dataclasses.dataclass
class ConfidenceCalibration:
    """A logistic model over standardized signals: confidence = sigmoid(bias + sum_i weight_i *
    (signal_i - mean_i) / scale_i); a NaN signal counts as its mean.

    Args:
        signals: names from `SIGNALS`, in the order of the numbers below.
        means, scales, weights: one per signal.
        bias: the intercept.
        novelty: the training photos' `PhotoNovelty` (needed when a photo signal is used).
        not_sure_below: captions below this confidence are shown as "not sure".
        promise: what the threshold promises, in words (measured on dev photos by cross-validation).
    """

    signals: tuple[str, ...]
    means: np.ndarray
    scales: np.ndarray
    weights: np.ndarray
    bias: float
    novelty: PhotoNovelty | None = None
    not_sure_below: float = 0.5
    promise: str = ""

    def __post_init__(self):
        self.signals = tuple(self.signals)
        unknown = [name for name in self.signals if name not in SIGNALS]
        if unknown:
            raise CalibrationError(f"signals: unknown signal(s) {', '.join(unknown)}; known: {', '.join(SIGNALS)}")
        for field in ("means", "scales", "weights"):
            value = np.asarray(getattr(self, field), np.float64)
            if value.shape != (len(self.signals),) or not np.all(np.isfinite(value)):
                raise CalibrationError(f"{field}: {len(self.signals)} finite numbers, one per signal")
            setattr(self, field, value)
        if np.any(self.scales <= 0):
            raise CalibrationError("scales: must be positive")
        if not 0.0 <= self.not_sure_below <= 1.0:
            raise CalibrationError(f"not_sure_below: must be in [0, 1]; got {self.not_sure_below}")
        if self.novelty is None and {"photo_distance", "photo_residual"} & set(self.signals):
            raise CalibrationError("novelty: a photo signal is used, so the training photos' statistics are needed")

    def logits(self, signals: dict[str, np.ndarray]) -> np.ndarray:
        columns = [np.asarray(signals[name], np.float64) for name in self.signals]
        values = np.stack(columns, -1) if columns else np.zeros((0, 0))
        standardized = np.nan_to_num((values - self.means) / self.scales, nan=0.0)
        return self.bias + standardized @ self.weights

    def confidence(self, signals: dict[str, np.ndarray]) -> np.ndarray:
        """float [B] in (0, 1): the estimated probability each caption is better than the median."""
        return 1.0 / (1.0 + np.exp(-self.logits(signals)))

    def to_json(self) -> dict:
        return {
            "signals": list(self.signals),
            "means": np.round(self.means, 9).tolist(),
            "scales": np.round(self.scales, 9).tolist(),
            "weights": np.round(self.weights, 9).tolist(),
            "bias": round(float(self.bias), 9),
            "novelty": None if self.novelty is None else self.novelty.to_json(),
            "not_sure_below": round(float(self.not_sure_below), 6),
            "promise": self.promise,
        }

    @classmethod
    def from_json(cls, values: dict, where: str = "confidence_calibration") -> "ConfidenceCalibration":
        if not isinstance(values, dict):
            raise CalibrationError(f"{where}: expected a JSON object")
        required = ("signals", "means", "scales", "weights", "bias")
        missing = [key for key in required if key not in values]
        if missing:
            raise CalibrationError(f"{where}: missing field(s) {', '.join(missing)}")
        try:
            novelty = values.get("novelty")
            return cls(
                signals=tuple(values["signals"]),
                means=values["means"],
                scales=values["scales"],
                weights=values["weights"],
                bias=float(values["bias"]),
                novelty=None if novelty is None else PhotoNovelty(**novelty),
                not_sure_below=float(values.get("not_sure_below", 0.5)),
                promise=str(values.get("promise", "")),
            )
        except (CalibrationError, TypeError, ValueError) as exc:
            raise CalibrationError(f"{where}: {exc}") from None
