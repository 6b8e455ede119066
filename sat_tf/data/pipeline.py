"""tf.data input pipeline: caption records -> batches of {"images", "tokens"}.

Order is a pure function of (seed, epoch), so training can resume at the exact batch it stopped at
(`skip_batches`). Captions are grouped into length buckets so that little compute is spent on
padding; each batch is padded to its longest caption.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np
import tensorflow as tf

from sat_tf.data.feature_cache import FeatureCache
from sat_tf.data.images import load_image
from sat_tf.data.photo_views import ViewedFeatures, ViewedPhotos
from sat_tf.data.records import NO_PHOTO, CaptionRecord
from sat_tf.data.tokenizer import CaptionTokenizer, pad_token_ids
from sat_tf.errors import SatTfError


class CaptionDataError(SatTfError, ValueError):
    """A caption record is unusable; the message names the record."""


@dataclasses.dataclass
class EncodedCaptions:
    """Token ids of every usable record and the image each belongs to."""

    image_index: np.ndarray  # int32 [N], row in the image source (NO_PHOTO: a caption without one)
    tokens: np.ndarray  # int32 [N, T_max], <start> ... <end> <pad>...
    lengths: np.ndarray  # int32 [N], tokens including <start> and <end>
    skipped: dict[str, str]  # record location -> reason, for records skipped on request
    source: np.ndarray | None = None  # int32 [N], the source of each caption (several sources)
    source_weights: tuple[float, ...] = (1.0,)  # captions of source s are seen weight[s] times an epoch

    def __len__(self) -> int:
        return len(self.lengths)

    @property
    def has_text_only(self) -> bool:
        return bool(np.any(self.image_index == NO_PHOTO))

    def select(self, rows: np.ndarray) -> "EncodedCaptions":
        return dataclasses.replace(
            self,
            image_index=self.image_index[rows],
            tokens=self.tokens[rows],
            lengths=self.lengths[rows],
            source=None if self.source is None else self.source[rows],
        )

    def for_epoch(self, seed: int, epoch: int) -> "EncodedCaptions":
        """The captions one epoch shows, mixing the sources by weight: a source of weight w and n
        captions gives round(w * n) of them, every caption floor(w) times and a random share of
        the rest, drawn anew each epoch from (seed, epoch) so that a resumed run sees the same
        epoch. Each epoch has the same number of captions per source."""
        if self.source is None or all(w == 1.0 for w in self.source_weights):
            return self
        rng = np.random.default_rng([seed, epoch])
        rows = []
        for number, weight in enumerate(self.source_weights):
            members = np.flatnonzero(self.source == number)
            whole, fraction = int(weight), weight - int(weight)
            extra = rng.choice(members, size=int(round(fraction * len(members))), replace=False)
            rows += [np.tile(members, whole), np.sort(extra)]
        return self.select(np.concatenate(rows).astype(np.int64))


def encode_captions(
    records: Sequence[CaptionRecord],
    tokenizer: CaptionTokenizer,
    image_index: Sequence[int] | None = None,
    max_words: int = 30,
    skip_invalid: bool = False,
    drop_long: bool = False,
    record_source: Sequence[int] | None = None,
    source_weights: tuple[float, ...] = (1.0,),
) -> EncodedCaptions:
    """Tokenizes records; empty captions and captions over `max_words` words are errors (or skips).

    Args:
        records: caption records.
        tokenizer: maps captions to ids.
        image_index: row of each record's image in the image source; defaults to `record.image_index`.
        max_words: most words per caption (`<start>` and `<end>` not counted).
        skip_invalid: skip and count bad records instead of raising.
        drop_long: skip and count captions over `max_words` (a long caption is not bad data, just
            more than the model is trained on), even without `skip_invalid`.
        record_source, source_weights: the source of each record and each source's weight, for
            mixing several sources (`EncodedCaptions.for_epoch`).
    """
    if image_index is None:
        if any(r.image_index is None for r in records):
            raise CaptionDataError("records without an image_index need an explicit image_index list")
        image_index = [int(r.image_index) for r in records if r.image_index is not None]
    if not records:
        raise CaptionDataError("no usable caption records")
    ragged = tokenizer.tokenize([r.caption for r in records])
    lengths = ragged.row_lengths().numpy()
    keep, skipped = [], {}
    for position, (record, length) in enumerate(zip(records, lengths)):
        problem, words = None, int(length) - 2
        if words <= 0:
            problem = "empty caption (no words after removing punctuation)"
        elif words > max_words:
            problem = f"caption has {words} words, over the limit of {max_words} words (max_caption_words)"
        if problem is None:
            keep.append(position)
        elif skip_invalid or (drop_long and words > max_words):
            skipped[record.where()] = problem
        else:
            raise CaptionDataError(f"{record.where()}: {problem}")
    if not keep:
        raise CaptionDataError("no usable caption records")
    tokens = pad_token_ids(tf.gather(ragged, keep))
    return EncodedCaptions(
        image_index=np.asarray(image_index, np.int32)[keep],
        tokens=tokens,
        lengths=lengths[keep].astype(np.int32),
        skipped=skipped,
        source=None if record_source is None else np.asarray(record_source, np.int32)[keep],
        source_weights=tuple(source_weights),
    )


def bucket_boundaries(lengths: np.ndarray, max_buckets: int = 4) -> list[int]:
    """Boundaries splitting caption lengths into up to `max_buckets` groups of similar size."""
    quantiles = np.quantile(lengths, np.linspace(0, 1, max_buckets + 1)[1:-1])
    return sorted({int(q) + 1 for q in quantiles if int(q) + 1 <= int(lengths.max())})


PREFETCH_BATCHES = 2


def _image_loader(images, image_size: int | None):
    """Returns (batch key, fn(indices [B]) -> tensor) usable inside tf.data: uint8 "images"
    [B, S, S, 3] from an array or files (through drawn views: `ViewedPhotos`), or float32
    "features" [B, L, D] from a feature cache (one per view: `ViewedFeatures`)."""
    if isinstance(images, (FeatureCache, ViewedFeatures)):
        shape = [None, *images.feature_shape]
        return "features", lambda indices: tf.ensure_shape(
            tf.numpy_function(images.gather, [indices], tf.float32, stateful=isinstance(images, ViewedFeatures)), shape
        )
    if isinstance(images, ViewedPhotos):
        if image_size is None:
            raise ValueError("image_size is required with photo views")

        def load_views(indices):
            batch = tf.numpy_function(lambda i: images.load_batch(i, image_size), [indices], tf.uint8, stateful=True)
            return tf.ensure_shape(batch, [None, image_size, image_size, 3])

        return "images", load_views
    if isinstance(images, np.ndarray):
        table = tf.constant(images)

        def gather(indices):
            batch = tf.gather(table, indices)
            if image_size is not None and images.shape[1] != image_size:
                batch = tf.cast(tf.image.resize(batch, (image_size, image_size)), tf.uint8)
            return batch

        return "images", gather
    if image_size is None:
        raise ValueError("image_size is required when images are file paths")
    paths = list(images)

    def load_batch(indices):
        return np.stack([load_image(paths[i], image_size) for i in indices])

    def load(indices):
        batch = tf.numpy_function(load_batch, [indices], tf.uint8, stateful=False)
        return tf.ensure_shape(batch, [None, image_size, image_size, 3])

    return "images", load


def make_caption_dataset(
    images: np.ndarray | Sequence[str] | FeatureCache | ViewedPhotos | ViewedFeatures,
    captions: EncodedCaptions,
    batch_size: int,
    *,
    image_size: int | None = None,
    shuffle: bool = True,
    seed: int = 0,
    epoch: int = 0,
    skip_batches: int = 0,
    bucket_by_length: bool = True,
    drop_remainder: bool = True,
) -> tf.data.Dataset:
    """Builds one epoch of batches {"images": uint8 [B, S, S, 3], "tokens": int32 [B, T],
    "image_index": int32 [B]}, or {"features": float32 [B, L, D], "tokens", "image_index"} when
    reading a feature cache (`image_index` lets a task look up each image's references).

    Args:
        images: an in-memory uint8 array [N, S, S, 3], a list of image file paths (check them
            first with `scan_images`; unreadable files fail the pipeline), or a `FeatureCache`;
            `ViewedPhotos` / `ViewedFeatures` read them through photo views drawn per row.
        captions: output of `encode_captions`; its `image_index` points into `images`. With
            captions without a photo (`NO_PHOTO`), batches also hold "has_photo" (bool [B]).
        batch_size: global batch size.
        image_size: resize images to this size (required for file paths).
        shuffle: shuffle records; the order depends only on `seed` and `epoch`.
        skip_batches: batches to skip at the start (resuming mid-epoch).
        bucket_by_length: group captions of similar length into batches.
        drop_remainder: drop the last incomplete batch (keeps shapes static for distribution).
    """
    text_only = captions.has_text_only
    dataset = _batched_captions(captions, batch_size, shuffle, seed, epoch, bucket_by_length, drop_remainder)
    if skip_batches:
        dataset = dataset.skip(skip_batches)
    key, load = _image_loader(images, image_size)

    def with_images(batch):
        index = batch["image_index"]
        inputs = {"tokens": batch["tokens"], "image_index": index}
        if not text_only:
            return {key: load(index), **inputs}
        # a caption without a photo reads photo 0, which the task replaces (see has_photo)
        return {key: load(tf.maximum(index, 0)), **inputs, "has_photo": tf.not_equal(index, NO_PHOTO)}

    # Fixed, small parallelism and prefetch: AUTOTUNE may buffer batches up to half the machine's
    # RAM (measured: peak RSS grew with the dataset), while two batches in flight keep a CPU or
    # GPU step fed and bound memory to a few batches whatever the dataset size.
    dataset = dataset.map(with_images, num_parallel_calls=PREFETCH_BATCHES, deterministic=True)
    return dataset.prefetch(PREFETCH_BATCHES)


def _batched_captions(captions, batch_size, shuffle, seed, epoch, bucket_by_length, drop_remainder):
    """Batches of {"image_index", "tokens", "length"}: the order and grouping, before images load."""
    captions = captions.for_epoch(seed, epoch)
    lengths = captions.lengths
    dataset = tf.data.Dataset.from_tensor_slices(
        {"image_index": captions.image_index, "tokens": captions.tokens, "length": lengths}
    )
    if shuffle:
        dataset = dataset.shuffle(len(captions), seed=seed + epoch, reshuffle_each_iteration=False)
    dataset = dataset.map(lambda ex: {**ex, "tokens": ex["tokens"][: ex["length"]]})
    boundaries = bucket_boundaries(lengths) if bucket_by_length else []
    if not boundaries:
        return dataset.padded_batch(batch_size, drop_remainder=drop_remainder)
    return dataset.bucket_by_sequence_length(
        lambda ex: ex["length"],
        bucket_boundaries=boundaries,
        bucket_batch_sizes=[batch_size] * (len(boundaries) + 1),
        drop_remainder=drop_remainder,
    )


def count_batches(
    captions: EncodedCaptions,
    batch_size: int,
    seed: int = 0,
    bucket_by_length: bool = True,
    drop_remainder: bool = True,
) -> int:
    """Number of batches in one epoch of `make_caption_dataset` (cheap: loads no images)."""
    dataset = _batched_captions(captions, batch_size, True, seed, 0, bucket_by_length, drop_remainder)
    return int(dataset.reduce(0, lambda count, _: count + 1))
