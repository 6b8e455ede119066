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
from sat_tf_edge.tags import Tag, word_matrix
from sat_tf_edge.tags import tags_from_probabilities as edge_tags_from_probabilities

__all__ = [
    "ImageNetTagger",
    "Tag",
    "class_table",
    "imagenet_classes",
    "shared_tagger",
    "tag_outputs",
    "tagger_for",
    "tags_from_probabilities",
]

IMAGENET_SIZE = 224  # the resolution the classifier was trained at


@dataclasses.dataclass(frozen=True)
class ImageNetClass:
    synset: str  # WordNet id, for example "n02504013"
    name: str  # WordNet names, for example "Indian elephant, Elephas maximus"
    word: str | None  # the caption word it stands for ("elephant"), None when there is none


@lru_cache(maxsize=1)
def imagenet_classes() -> tuple[ImageNetClass, ...]:
    """The 1,000 ImageNet-1k classes in the classifier's order, with their caption words."""
    table = json.loads((resources.files("sat_tf.models") / "data" / "imagenet_words.json").read_text("utf-8"))
    return tuple(ImageNetClass(**entry) for entry in table["classes"])


@lru_cache(maxsize=1)
def tag_vocabulary() -> tuple[tuple[str, ...], np.ndarray]:
    """(the distinct caption words of the class table, float32 [1000, W] with a 1 where a class
    stands for a word): class probabilities @ matrix = word probabilities."""
    return word_matrix([c.word for c in imagenet_classes()])


def class_table() -> tuple[list[str], list[str | None]]:
    """The class table as the edge rule takes it (and a manifest carries it): each class's first
    name and its caption word."""
    classes = imagenet_classes()
    return [c.name.split(",")[0] for c in classes], [c.word for c in classes]


def tags_from_probabilities(
    probabilities: np.ndarray, min_probability: float = 0.1, max_tags: int = 3
) -> list[list[Tag]]:
    """[N, 1000] class probabilities -> per image, its caption-word tags
    (`sat_tf_edge.tags.tags_from_probabilities` over the shipped class table). The SavedModel
    computes the same (`tag_outputs`)."""
    return edge_tags_from_probabilities(probabilities, *class_table(), min_probability, max_tags)


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
        self._inference_network = efficientnet_lite.fold_batch_norm(self.network)
        self._probabilities = tf.function(self.class_probabilities, reduce_retracing=True)

    def class_probabilities(self, images: tf.Tensor) -> tf.Tensor:
        """In the graph: [B, H, W, 3] float pixels in 0..255 -> [B, 1000] class probabilities."""
        images = tf.cast(images, tf.float32)
        if images.shape[1] != IMAGENET_SIZE or images.shape[2] != IMAGENET_SIZE:
            images = tf.image.resize(images, (IMAGENET_SIZE, IMAGENET_SIZE))
        logits = self._inference_network(efficientnet_lite.preprocess(images), training=False)
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


def tagger_for(backbone: str, tags: bool | None) -> ImageNetTagger | None:
    """The tagger an export carries: none when `tags` is False, or when it is None (the default)
    and the encoder is not an EfficientNet-Lite with ImageNet weights; asking for tags of another
    encoder is an error."""
    if tags is False or (tags is None and backbone not in efficientnet_lite.VARIANTS):
        return None
    if backbone not in efficientnet_lite.VARIANTS:
        raise ValueError(f"tags need an EfficientNet-Lite encoder with ImageNet weights; this model's is '{backbone}'")
    return shared_tagger(backbone)
