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


def may_show_text(tags) -> str:
    """What the model sees in a photo, from its tags (a list of (word, probability), most probable
    first): "elephant 87%, tusker 5%".

    Example:
        >>> may_show_text([("elephant", 0.87), ("tusker", 0.05)])
        'elephant 87%, tusker 5%'
    """
    return ", ".join(f"{word} {probability:.0%}" for word, probability in tags)


def confidence_text(confidence: float, not_sure: bool, tags=()) -> str:
    """How a caption's confidence is printed, by `sat-tf caption` and `sat-tf-edge` alike: when the
    model is not sure, marked so, with what the photo may show where its tags are known.

    Example:
        >>> confidence_text(0.71, False)
        '(confidence 0.71)'
        >>> confidence_text(0.31, True, [("elephant", 0.87)])
        '(confidence 0.31: not sure; it may show: elephant 87%)'
    """
    if not not_sure:
        return f"(confidence {confidence:.2f})"
    may_show = f"; it may show: {may_show_text(tags)}" if tags else ""
    return f"(confidence {confidence:.2f}: not sure{may_show})"


def shown_text(caption: str, not_sure: bool, tags, hide_when_not_sure: bool = False) -> str:
    """What to show for a caption: the caption itself, always, unless `hide_when_not_sure` (for
    pipelines where no caption beats a wrong one, such as alt text) and the model is not sure; then
    what it does see instead of the sentence. `tags` is a list of (word, probability), most
    probable first.

    Example:
        >>> shown_text("a dog runs on the grass", True, [("elephant", 0.87)])
        'a dog runs on the grass'
        >>> shown_text("a dog runs on the grass", True, [("elephant", 0.87)], hide_when_not_sure=True)
        'not sure what this is; it looks like: elephant 87%'
        >>> shown_text("a dog runs on the grass", True, [], hide_when_not_sure=True)
        'not sure what this is'
    """
    if not (not_sure and hide_when_not_sure):
        return caption
    return f"not sure what this is; it looks like: {may_show_text(tags)}" if tags else "not sure what this is"


def caption_record(
    image: str,
    caption: str,
    log_prob: float,
    confidence: float,
    not_sure: bool,
    candidates: list[str],
    tags=(),
    guided_by_tags: bool = False,
) -> dict:
    """The record of one captioned photo, as `sat-tf caption --output` writes it on every path (the
    library's `CaptionedFiles.records`, the fast path's and Beam's `EdgeCaption.record`): the caption,
    its summed log-prob, its confidence and whether it is below the model's threshold, the k-best
    captions, the tags (`sat_tf_edge.tags.Tag`s) and whether they guided the caption."""
    return {
        "image": image,
        "caption": caption,
        "log_prob": float(log_prob),
        "confidence": float(confidence),
        "not_sure": bool(not_sure),
        "candidates": list(candidates),
        "guided_by_tags": bool(guided_by_tags),
        "tags": [{"word": t.word, "probability": t.probability, "classes": list(t.classes)} for t in tags],
    }
