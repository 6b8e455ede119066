"""Validation scores for model selection during training (the paper selected on validation BLEU)."""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import numpy as np

from sat_tf.evaluation.bleu import corpus_bleu
from sat_tf.inference.greedy import caption_images
from sat_tf.models.captioner import Captioner


def bleu4_validator(
    images: np.ndarray,
    image_ids: Sequence[str],
    references: Mapping[str, Sequence[str]],
    max_length: int = 20,
) -> Callable[[Captioner], float]:
    """Returns model -> corpus BLEU-4 (0-100) of greedy captions of `images`, for `train(validate=)`.

    Args:
        images: validation images [N, S, S, 3] (uint8).
        image_ids: id of each image, in the order of `images`.
        references: image id -> reference captions.
        max_length: most tokens per generated caption.
    """
    if len(images) != len(image_ids):
        raise ValueError(f"{len(images)} validation images but {len(image_ids)} ids")

    def validate(model: Captioner) -> float:
        decoded = caption_images(model, images, max_length)
        return corpus_bleu(references, dict(zip(image_ids, decoded.texts)))["BLEU-4"]

    return validate
