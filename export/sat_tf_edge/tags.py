"""ImageNet class probabilities -> caption-word tags: one rule for the library (`sat_tf.models.
imagenet_tagger`) and the edge runtime, whose encoder file carries the same classifier.

A class table row is (class name, caption word or None): "Indian elephant" -> "elephant", the dog
breeds -> "dog"; the library reads it from `sat_tf/models/data/imagenet_words.json`, a manifest
carries it (`EdgeManifest.imagenet_classes`).
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np


@dataclasses.dataclass(frozen=True)
class Tag:
    """One caption word an image shows, with the summed probability of the classes behind it."""

    word: str
    probability: float
    classes: tuple[str, ...]  # the ImageNet class names that gave it, most probable first


def word_matrix(class_words: Sequence[str | None]) -> tuple[tuple[str, ...], np.ndarray]:
    """(the distinct caption words of the class table, float32 [C, W] with a 1 where a class stands
    for a word): class probabilities @ matrix = word probabilities."""
    words = tuple(sorted({w for w in class_words if w is not None}))
    column = {word: index for index, word in enumerate(words)}
    matrix = np.zeros([len(class_words), len(words)], np.float32)
    for row, word in enumerate(class_words):
        if word is not None:
            matrix[row, column[word]] = 1.0
    return words, matrix


def tags_from_probabilities(
    probabilities: np.ndarray,
    class_names: Sequence[str],
    class_words: Sequence[str | None],
    min_probability: float = 0.1,
    max_tags: int = 3,
) -> list[list[Tag]]:
    """[N, C] class probabilities -> per image, the caption words whose classes sum to at least
    `min_probability`, most probable first (at most `max_tags`). Summing per word lets "dog" win
    when the mass is spread over several breeds.

    Example:
        >>> names, words = ["pug", "beagle", "tabby"], ["dog", "dog", "cat"]
        >>> tags = tags_from_probabilities(np.array([[0.5, 0.3, 0.2]]), names, words)
        >>> [(tag.word, tag.classes) for tag in tags[0]]
        [('dog', ('pug', 'beagle')), ('cat', ('tabby',))]
    """
    probabilities = np.asarray(probabilities)
    if probabilities.ndim != 2 or probabilities.shape[1] != len(class_words):
        raise ValueError(f"expected [N, {len(class_words)}] class probabilities, got shape {probabilities.shape}")
    words, matrix = word_matrix(class_words)
    word_probabilities = probabilities.astype(np.float32) @ matrix
    result = []
    for row, per_word in zip(probabilities, word_probabilities):
        image_tags = []
        for column in np.argsort(-per_word, kind="stable")[:max_tags]:
            if per_word[column] < min_probability:
                break
            members = np.flatnonzero(matrix[:, column])
            names = tuple(
                class_names[i] for i in members[np.argsort(-row[members], kind="stable")][:3] if row[i] >= 0.01
            )
            image_tags.append(Tag(words[column], float(per_word[column]), names))
        result.append(image_tags)
    return result
