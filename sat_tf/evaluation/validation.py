"""Validation scores for model selection during training (the paper selected on validation BLEU)."""

from __future__ import annotations

import dataclasses
from typing import Callable, Mapping, Sequence

import numpy as np

from sat_tf.evaluation.bleu import corpus_bleu, normalize_for_scoring
from sat_tf.evaluation.cider import CiderD
from sat_tf.inference import generate_captions
from sat_tf.models.captioner import Captioner


@dataclasses.dataclass
class ValidationConfig:
    """Held-out data for model selection (the paper selects on validation BLEU).

    Args:
        captions: validation caption file (same formats as data.captions); None: held-out
            generated images when training on generated data, else no validation.
        image_dir: folder of the validation images (default: data.image_dir).
        split_list: Flickr split list of the validation images.
        split: Karpathy split used for validation.
        feature_cache: features of the validation images (a folder, or "auto" to extract them).
        num_images: held-out generated images (default: a tenth of data.num_images, at least 64).
    """

    captions: str | None = None
    image_dir: str | None = None
    split_list: str | None = None
    split: str = "val"
    feature_cache: str | None = None
    num_images: int | None = None


def cider_validator(
    image_ids: Sequence[str],
    references: Mapping[str, Sequence[str]],
    max_length: int = 20,
    images: np.ndarray | None = None,
    features: np.ndarray | None = None,
    forbid_unknown: bool = False,
) -> Callable[[Captioner], float]:
    """Returns model -> CIDEr-D (0-100, coco-caption's arithmetic, document frequencies from the
    validation references) of greedy captions: model selection for self-critical training."""
    ids = list(image_ids)
    tokenized = [[caption.split() for caption in normalize_for_scoring(references[i])] for i in ids]
    cider = CiderD(tokenized)

    def validate(model: Captioner) -> float:
        decoded = generate_captions(
            model, images=images, features=features, max_length=max_length, forbid_unknown=forbid_unknown
        ).best()
        hypotheses = [text.split() for text in normalize_for_scoring(decoded.texts)]
        return 100.0 * float(np.mean(cider.scores(hypotheses, tokenized)))

    return validate


def bleu4_validator(
    images: np.ndarray | None,
    image_ids: Sequence[str],
    references: Mapping[str, Sequence[str]],
    max_length: int = 20,
    features: np.ndarray | None = None,
    forbid_unknown: bool = False,
) -> Callable[[Captioner], float]:
    """Returns model -> corpus BLEU-4 (0-100) of greedy captions, for `train(validate=)`.

    The decoding function is compiled once and reused every epoch (`generate_captions` caches it).

    Args:
        images: validation images [N, S, S, 3] (uint8), or None with `features`.
        image_ids: id of each image, in the order of `images` (or `features`).
        references: image id -> reference captions.
        max_length: most tokens per generated caption.
        features: precomputed region features [N, L, D] of the validation images.
        forbid_unknown: never emit `<unk>` (as the final decoding does).
    """
    if images is None and features is None:
        raise ValueError("pass images= or features= of the validation images")
    count = len(images) if images is not None else len(features)  # type: ignore[arg-type]  # one is set
    if len(image_ids) != count:
        raise ValueError(f"{count} validation images but {len(image_ids)} ids")

    def validate(model: Captioner) -> float:
        decoded = generate_captions(
            model, images=images, features=features, max_length=max_length, forbid_unknown=forbid_unknown
        ).best()
        return corpus_bleu(references, dict(zip(image_ids, decoded.texts)))["BLEU-4"]

    return validate
