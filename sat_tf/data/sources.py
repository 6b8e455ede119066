"""The one entry from a caption source to captions and images: a generated dataset or files."""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from sat_tf.data import synthetic
from sat_tf.data.feature_cache import FeatureCache
from sat_tf.data.images import load_image, scan_images
from sat_tf.data.readers import index_images, read_captions
from sat_tf.data.records import CaptionRecord, group_references
from sat_tf.errors import ConfigError

_PATH_FIELDS = ("captions", "image_dir", "split_list")


@dataclasses.dataclass
class DataConfig:
    """Where captions and images come from, and how captions become a vocabulary.

    Args:
        captions: a caption file (.jsonl/.csv, Flickr token .txt, COCO or Karpathy .json);
            None: the generated shapes dataset.
        image_dir: folder the caption file's image paths are relative to.
        split_list: a Flickr split list (for example Flickr_8k.trainImages.txt).
        split: Karpathy split (train includes restval), when `captions` is a Karpathy file.
        data_root: relative `captions`, `image_dir` and `split_list` are resolved against it.
        feature_cache: a feature cache folder to read instead of images, filled first (resumably)
            when missing; "auto": `<output_dir>/features/<split>` of the run.
        num_images, data_seed, grid_size, captions_per_image: the generated dataset.
        skip_bad: skip (and count) unreadable images and unusable captions instead of failing.
        max_caption_words: captions with more words are left out of training (and counted).
        min_word_count, max_vocabulary: the vocabulary (training data only).
    """

    captions: str | None = None
    image_dir: str | None = None
    split_list: str | None = None
    split: str = "train"
    data_root: str | None = None
    feature_cache: str | None = None
    num_images: int = 2000
    data_seed: int = 0
    grid_size: int = 4
    captions_per_image: int = 1
    skip_bad: bool = False
    max_caption_words: int = 30
    min_word_count: int = 1
    max_vocabulary: int | None = None

    def __post_init__(self):
        for name in ("num_images", "max_caption_words", "min_word_count", "grid_size", "captions_per_image"):
            if getattr(self, name) < 1:
                raise ConfigError(f"data.{name} must be positive; got {getattr(self, name)}")

    @property
    def is_synthetic(self) -> bool:
        return self.captions is None

    def resolved(self) -> "DataConfig":
        """A copy whose relative paths are resolved against `data_root`."""
        if self.data_root is None:
            return self
        root = Path(self.data_root)
        resolved: dict[str, Any] = {
            name: str(root / value)
            for name in _PATH_FIELDS
            if (value := getattr(self, name)) is not None and not os.path.isabs(value)
        }
        return dataclasses.replace(self, **resolved)


@dataclasses.dataclass
class CaptionData:
    """Images and the caption records that point into them.

    images: uint8 array [N, S, S, 3] (generated data) or N image file paths; records: caption
    records; image_index: row in `images` of each record's image; image_ids: id of each image, in
    the order of `images`; objects: the generated dataset's objects per image (None for files).
    """

    images: np.ndarray | list[str]
    records: list[CaptionRecord]
    image_index: list[int]
    image_ids: list[str]
    objects: list | None = None

    def __len__(self) -> int:
        return len(self.image_ids)

    @property
    def image_paths(self) -> list[str]:
        if isinstance(self.images, np.ndarray):
            raise ConfigError("this needs image files (a caption file), not the generated dataset")
        return list(self.images)

    def references(self) -> dict[str, list[str]]:
        """image id -> its reference captions."""
        return group_references(self.records, [self.image_ids[i] for i in self.image_index])


def load_captions(
    config: DataConfig,
    image_size: int,
    id_prefix: str = "train",
    seed_offset: int = 0,
    num_images: int | None = None,
    verbose: bool = True,
) -> CaptionData:
    """Reads (or generates) a dataset described by `config`.

    Args:
        config: the source.
        image_size: size of generated images (the encoder's input size).
        id_prefix, seed_offset, num_images: generated data only: image ids' prefix, an offset
            added to `data_seed` (held-out sets use another one), and a count overriding
            `config.num_images`.
        verbose: report skipped images on stderr.
    """
    config = config.resolved()
    if config.is_synthetic:
        data = synthetic.generate(
            num_images or config.num_images,
            seed=config.data_seed + seed_offset,
            image_size=image_size,
            grid_size=config.grid_size,
            captions_per_image=config.captions_per_image,
            id_prefix=id_prefix,
        )
        return CaptionData(
            data.images, data.records, [int(r.image_index or 0) for r in data.records], data.image_ids, data.objects
        )
    assert config.captions is not None  # not synthetic
    records = read_captions(config.captions, config.image_dir, config.split_list, config.split)
    scan = scan_images([r.image_path for r in records], skip_unreadable=config.skip_bad)
    if scan.skipped:
        if verbose:
            first = "; ".join(list(scan.skipped.values())[:3])
            print(f"skipped {len(scan.skipped)} unreadable image(s), e.g. {first}", file=sys.stderr)
        readable = set(scan.readable)
        records = [r for r in records if r.image_path in readable]
        if not records:
            raise ConfigError(f"{config.captions}: no readable images left")
    paths, image_index = index_images(records)
    return CaptionData(paths, records, image_index, paths)


def decoder_inputs(source: FeatureCache | np.ndarray | Sequence[str], image_size: int) -> dict:
    """What a model decodes a split from: {"features": every entry} of a feature cache, or
    {"images": [N, S, S, 3]} from an image array or a list of image files (read at `image_size`)."""
    if isinstance(source, FeatureCache):
        return {"features": source.gather(np.arange(len(source)))}
    if isinstance(source, np.ndarray):
        return {"images": source}
    return {"images": np.stack([load_image(path, image_size) for path in source])}
