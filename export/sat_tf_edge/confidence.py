"""A caption's confidence and the "not sure" rule: one definition for the library, the server and
devices (`sat_tf.inference.results` uses these).
"""

from __future__ import annotations

import numpy as np

# Below this confidence a caption is shown as "not sure" unless the model's decoding settings say
# otherwise (`DecodingConfig.not_sure_below`, carried by exports): the median confidence of the
# flickr8k_lite0 preset's captions on Flickr8k dev (0.621, `benchmarks/quality/confidence.py`), so half of
# in-domain captions pass and most captions of the COCO photos (median 0.509) do not.
NOT_SURE_BELOW = 0.62


def caption_confidence(log_prob, lengths) -> np.ndarray:
    """exp(log p / length): the model's geometric-mean probability per token of a caption, `<end>`
    included. Length-normalised, so long captions are not doubted for their length; on Flickr8k
    dev and on COCO photos it ranks captions by how right they are (AUROC in
    `benchmarks/quality/confidence.py`).

    Example:
        >>> float(caption_confidence(np.log(0.5) * 3, 3))
        0.5
    """
    return np.exp(np.asarray(log_prob, np.float64) / np.maximum(np.asarray(lengths), 1))


def confidence_text(confidence: float, not_sure: bool) -> str:
    """How a caption's confidence is printed, by `sat-tf caption` and `sat-tf-edge` alike.

    Example:
        >>> confidence_text(0.4, True)
        '(confidence 0.40: not sure)'
    """
    return f"(confidence {confidence:.2f}{': not sure' if not_sure else ''})"


def shown_text(caption: str, not_sure: bool, tags, always_caption: bool = False) -> str:
    """What to show for a caption: the caption itself, or, when the model is not sure and its
    ImageNet tags are known, what it does see instead of a sentence that is likely wrong. `tags`
    is a list of (word, probability), most probable first.

    Example:
        >>> shown_text("a dog runs on the grass", True, [("elephant", 0.87)])
        'not sure what this is; it looks like: elephant 87%'
        >>> shown_text("a dog runs on the grass", True, [("elephant", 0.87)], always_caption=True)
        'a dog runs on the grass'
    """
    if not not_sure or always_caption or not tags:
        return caption
    return "not sure what this is; it looks like: " + ", ".join(
        f"{word} {probability:.0%}" for word, probability in tags
    )
