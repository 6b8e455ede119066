"""Image tags from the EfficientNet-Lite encoder's own ImageNet classifier.

A captioner trained on Flickr8k knows people, dogs and sports; its encoder's ImageNet head, from
the same checkpoint, still recognises elephants, buses and pizzas. `ImageNetTagger` turns that
head's probabilities into caption words through the class -> word table shipped with sat_tf
(`sat_tf/models/data/imagenet_words.json`: Indian elephant -> elephant, trolleybus -> bus,
airliner -> airplane, the dog breeds -> dog; written by `benchmarks/deployment/build_imagenet_words.py`).
Constrained decoding (`sat_tf.inference.ConstrainedBeamSampler`) then makes a caption name them.
"""

from __future__ import annotations

import dataclasses
import json
from functools import lru_cache
from importlib import resources

import numpy as np
import tensorflow as tf

from sat_tf.models import efficientnet_lite

IMAGENET_SIZE = 224  # the resolution the classifier was trained at


@dataclasses.dataclass(frozen=True)
class ImageNetClass:
    synset: str  # WordNet id, for example "n02504013"
    name: str  # WordNet names, for example "Indian elephant, Elephas maximus"
    word: str | None  # the caption word it stands for ("elephant"), None when there is none


@dataclasses.dataclass(frozen=True)
class Tag:
    """One caption word an image shows, with the summed probability of the classes behind it."""

    word: str
    probability: float
    classes: tuple[str, ...]  # the ImageNet class names that gave it, most probable first


@lru_cache(maxsize=1)
def imagenet_classes() -> tuple[ImageNetClass, ...]:
    """The 1,000 ImageNet-1k classes in the classifier's order, with their caption words."""
    table = json.loads((resources.files("sat_tf.models") / "data" / "imagenet_words.json").read_text("utf-8"))
    return tuple(ImageNetClass(**entry) for entry in table["classes"])


@lru_cache(maxsize=1)
def tag_vocabulary() -> tuple[tuple[str, ...], np.ndarray]:
    """(the distinct caption words of the class table, float32 [1000, W] with a 1 where a class
    stands for a word): class probabilities @ matrix = word probabilities."""
    classes = imagenet_classes()
    words = tuple(sorted({c.word for c in classes if c.word is not None}))
    column = {word: index for index, word in enumerate(words)}
    matrix = np.zeros([len(classes), len(words)], np.float32)
    for row, entry in enumerate(classes):
        if entry.word is not None:
            matrix[row, column[entry.word]] = 1.0
    return words, matrix


def tags_from_probabilities(
    probabilities: np.ndarray, min_probability: float = 0.1, max_tags: int = 3
) -> list[list[Tag]]:
    """[N, 1000] class probabilities -> per image, the caption words whose classes sum to at least
    `min_probability`, most probable first (at most `max_tags`). Summing per word lets "dog" win
    when the mass is spread over several breeds. The SavedModel computes the same (`tag_outputs`)."""
    classes = imagenet_classes()
    if probabilities.ndim != 2 or probabilities.shape[1] != len(classes):
        raise ValueError(f"expected [N, {len(classes)}] class probabilities, got shape {probabilities.shape}")
    words, matrix = tag_vocabulary()
    word_probabilities = probabilities.astype(np.float32) @ matrix
    result = []
    for row, per_word in zip(probabilities, word_probabilities):
        image_tags = []
        for column in np.argsort(-per_word, kind="stable")[:max_tags]:
            if per_word[column] < min_probability:
                break
            members = np.flatnonzero(matrix[:, column])
            names = tuple(
                classes[i].name.split(",")[0]
                for i in members[np.argsort(-row[members], kind="stable")][:3]
                if row[i] >= 0.01
            )
            image_tags.append(Tag(words[column], float(per_word[column]), names))
        result.append(image_tags)
    return result


def tag_outputs(class_probabilities: tf.Tensor, count: int = 3) -> dict[str, tf.Tensor]:
    """In the graph: [B, 1000] class probabilities -> {"tags": string [B, count], the most probable
    caption words, and "tag_probabilities": float32 [B, count]} (as `tags_from_probabilities`)."""
    words, matrix = tag_vocabulary()
    word_probabilities = tf.matmul(tf.cast(class_probabilities, tf.float32), tf.constant(matrix))
    probabilities, columns = tf.math.top_k(word_probabilities, k=count)
    return {"tags": tf.gather(tf.constant(words), columns), "tag_probabilities": probabilities}


class ImageNetTagger:
    """The ImageNet classifier of an EfficientNet-Lite checkpoint, as caption-word tags.

    Args:
        variant: "efficientnet_lite0" (the shipped preset's encoder), "efficientnet_lite1" or
            "efficientnet_lite2".
        weights_path: a legacy `.pth` checkpoint; default: the installed weights package.

    Example:
        >>> tagger = ImageNetTagger()
        >>> tagger.tags(images)[0]       # images: [N, H, W, 3] in 0..255
        [Tag(word='elephant', probability=0.81, classes=('Indian elephant', 'African elephant', 'tusker'))]

    Reference:
        Anderson et al., "Guided Open Vocabulary Image Captioning with Constrained Beam Search",
        EMNLP 2017 (image tags from a classifier, enforced by constrained beam search).
    """

    def __init__(self, variant: str = "efficientnet_lite0", weights_path: str | None = None):
        self.variant = variant
        self.network = efficientnet_lite.build_efficientnet_lite(variant, include_top=True, image_size=IMAGENET_SIZE)
        efficientnet_lite.load_imagenet_weights(self.network, variant, weights_path)
        self._probabilities = tf.function(self.class_probabilities, reduce_retracing=True)

    def class_probabilities(self, images: tf.Tensor) -> tf.Tensor:
        """In the graph: [B, H, W, 3] float pixels in 0..255 -> [B, 1000] class probabilities."""
        images = tf.cast(images, tf.float32)
        if images.shape[1] != IMAGENET_SIZE or images.shape[2] != IMAGENET_SIZE:
            images = tf.image.resize(images, (IMAGENET_SIZE, IMAGENET_SIZE))
        logits = self.network(efficientnet_lite.preprocess(images), training=False)
        return tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1)

    def probabilities(self, images) -> np.ndarray:
        """[N, H, W, 3] pixels in 0..255 -> [N, 1000] class probabilities."""
        return self._probabilities(tf.convert_to_tensor(images)).numpy()

    def tags(self, images, min_probability: float = 0.1, max_tags: int = 3) -> list[list[Tag]]:
        """Per image, its caption-word tags (see `tags_from_probabilities`)."""
        return tags_from_probabilities(self.probabilities(images), min_probability, max_tags)


@lru_cache(maxsize=2)
def shared_tagger(variant: str = "efficientnet_lite0") -> ImageNetTagger:
    """One tagger per variant per process (building it loads the checkpoint: about a second)."""
    return ImageNetTagger(variant)
