"""Tag-guided decoding: make a caption name what the encoder's ImageNet head sees.

A captioner trained on Flickr8k says "a group of people are sitting on a rock" for elephants,
although its encoder's ImageNet classifier is sure of "Indian elephant". Given each image's tags
(`sat_tf.models.imagenet_tagger`), decoding can require the caption to contain one of the tag
words (`ConstrainedBeamSampler`):

- "off": captions as the model makes them;
- "on": every image whose tags reach `min_probability` with a word in the model's vocabulary;
- "auto" (the default where tags are computed): only where the tagger is confident
  (`auto_probability`) and the free caption names none of its words, so captions of the photos
  the model knows stay as they are.

A tag word outside the model's vocabulary (zebra, panda, banana for the Flickr8k preset) borrows
the token of a related word the model knows (`SURROGATES`: zebra -> horse, panda -> bear): the
caption is decoded with that token required, and its text names the tag's word instead (the
caption's `tokens` keep the borrowed id). This is "direct transfer" of a known word's embedding
and output row to a novel word, done without copying weights. Tags with neither are skipped.
In a guided caption, "a" before a vowel becomes "an" ("a elephant": the model rarely saw
"an" before the words it was pushed to say).
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from sat_tf.data.coco_words import coco_category
from sat_tf.models.imagenet_tagger import Tag

TAG_MODES = ("off", "on", "auto")
# A novel word -> an in-vocabulary word of the same kind whose place in a caption it can take.
SURROGATES = {
    "zebra": "horse",
    "giraffe": "horse",
    "panda": "bear",
    "lion": "tiger",
    "cheetah": "tiger",
    "leopard": "tiger",
    "jaguar": "tiger",
    "hippo": "cow",
    "bison": "cow",
    "buffalo": "cow",
    "banana": "orange",
    "lemon": "orange",
    "apple": "orange",
    "strawberry": "orange",
    "pineapple": "orange",
    "broccoli": "food",
    "microwave": "refrigerator",
    "stove": "refrigerator",
    "motorcycle": "bike",
    "scooter": "bike",
    "tram": "train",
    "taxi": "car",
    "van": "car",
    "jeep": "car",
    "airliner": "airplane",
    "ship": "boat",
    "canoe": "boat",
}


@dataclasses.dataclass(frozen=True)
class TagGuidance:
    """When tags constrain decoding.

    Args:
        mode: "off", "on" or "auto" (see the module docstring).
        min_probability: "on": the tags whose words constrain the caption.
        auto_probability: "auto": a tag at least this probable, named nowhere in the free
            caption, makes the image's caption constrained (to the tags this probable).
    """

    mode: str = "auto"
    min_probability: float = 0.3
    auto_probability: float = 0.5

    def __post_init__(self):
        if self.mode not in TAG_MODES:
            raise ValueError(f"tag mode must be one of {TAG_MODES}, got '{self.mode}'")
        for name in ("min_probability", "auto_probability"):
            if not 0.0 < getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in (0, 1], got {getattr(self, name)}")


def tag_token_ids(tag: Tag, vocabulary: dict[str, int]) -> dict[int, str | None]:
    """The model's token ids that meet a tag ("hot dog" is met by "hot" or "dog"), each with the
    novel word its text should show instead, or None: {id of "horse": "zebra"} for a zebra tag."""
    ids: dict[int, str | None] = {}
    for word in tag.word.split():
        if word in vocabulary:
            ids[vocabulary[word]] = None
        elif SURROGATES.get(word) in vocabulary:
            ids[vocabulary[SURROGATES[word]]] = word
    return ids


def caption_names(caption: str, tag_word: str) -> bool:
    """Whether a caption already names what a tag word does: the word itself, a form of it
    ("dogs", "skier" for "skis", "biking" for "bike") or a word of the same COCO category
    ("puppy" for "dog", "plane" for "airplane")."""
    stems = [stem for stem in (part.rstrip("s").removesuffix("e") for part in tag_word.split()) if len(stem) >= 3]
    category = coco_category(tag_word)
    for word in caption.lower().split():
        if word == tag_word or any(word.startswith(stem) for stem in stems):
            return True
        if category is not None and coco_category(word) == category:
            return True
    return False


def constraint_words(
    tags: Sequence[Sequence[Tag]], vocabulary: dict[str, int], min_probability: float
) -> tuple[np.ndarray, list[dict[str, str]]]:
    """float32 [N, V]: 1 for the tokens of each image's tags at least `min_probability` probable;
    and per image, the surrogate words to rename in its caption ({"horse": "zebra"})."""
    mask = np.zeros([len(tags), max(vocabulary.values()) + 1], np.float32)
    renames: list[dict[str, str]] = [{} for _ in tags]
    words = {index: word for word, index in vocabulary.items()}
    for row, image_tags in enumerate(tags):
        for tag in image_tags:
            if tag.probability >= min_probability:
                for index, novel in tag_token_ids(tag, vocabulary).items():
                    mask[row, index] = 1.0
                    if novel is not None:
                        renames[row].setdefault(words[index], novel)
    return mask, renames


def guided_text(text: str, renames: dict[str, str]) -> str:
    """A constrained caption's text: surrogate words renamed ("horse" -> "zebra"), "a" -> "an" before a vowel."""
    words = [renames.get(word, word) for word in text.split()]
    return " ".join(
        "an" if word == "a" and index + 1 < len(words) and words[index + 1][0] in "aeiou" else word
        for index, word in enumerate(words)
    )


@dataclasses.dataclass
class GuidancePlan:
    """Which captions of a batch the tags constrain: `rows` (indices into the batch), the tokens
    each of them must contain (`words`, float32 [len(rows), V]) and the surrogate renames of each."""

    rows: list[int]
    words: np.ndarray
    renames: list[dict[str, str]]

    def texts(self, texts: Sequence[Sequence[str]]) -> list[list[str]]:
        """The constrained rows' candidate texts with the renames and articles fixed."""
        return [[guided_text(text, renames) for text in row_texts] for row_texts, renames in zip(texts, self.renames)]


def plan_guidance(
    guidance: TagGuidance, free_texts: Sequence[str], tags: Sequence[Sequence[Tag]], vocabulary: Sequence[str]
) -> GuidancePlan:
    """The one step tag guidance adds to the decoding loop: given a batch's free captions (best
    first) and tags, which captions to decode again constrained, and to what (see the module
    docstring for the modes)."""
    index = {word: i for i, word in enumerate(vocabulary)}
    if guidance.mode == "off":
        return GuidancePlan([], np.zeros([0, len(vocabulary)], np.float32), [])
    threshold = guidance.min_probability if guidance.mode == "on" else guidance.auto_probability
    words, renames = constraint_words(tags, index, threshold)
    rows = [row for row in range(len(free_texts)) if words[row].any()]
    if guidance.mode == "auto":  # only where the free caption names none of the confident tags
        rows = [
            row
            for row in rows
            if not any(caption_names(free_texts[row], tag.word) for tag in tags[row] if tag.probability >= threshold)
        ]
    return GuidancePlan(rows, words[rows], [renames[row] for row in rows])
