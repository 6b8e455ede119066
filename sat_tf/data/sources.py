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
from sat_tf.data.photo_views import PhotoView, parse_photo_views
from sat_tf.data.readers import index_images, read_captions, read_pseudo_captions, read_text_captions
from sat_tf.data.records import NO_PHOTO, CaptionRecord, group_references
from sat_tf.errors import ConfigError

_PATH_FIELDS = ("captions", "image_dir", "split_list")


@dataclasses.dataclass(frozen=True)
class CaptionSource:
    """One more caption source to train on beside the data section's own (`DataConfig.mix`).

    Args:
        captions: a caption file, in any format `DataConfig.captions` takes; with `text_only`, a
            `.jsonl` file with a 'caption' per line (COCO captions without photos) or a `.txt`
            file with one caption per line.
        image_dir: folder the file's image paths are relative to.
        split_list: a split list limiting the file to some images (Flickr token or COCO JSON files).
        split: the Karpathy split, for a Karpathy file.
        weight: how often each caption of this source is seen per epoch, relative to the data
            section's own (`DataConfig.weight`): 2 shows every caption twice, 0.25 a quarter of
            them (a different quarter each epoch).
        text_only: captions without photos, which teach the decoder language only (the model
            needs `text_only_context`).
        min_confidence: the file is a teacher's captions of photos without captions (the `.jsonl`
            `sat-tf caption --output` writes); train on those it was at least this sure of
            (self-training, `read_pseudo_captions`).
    """

    captions: str
    image_dir: str | None = None
    split_list: str | None = None
    split: str = "train"
    weight: float = 1.0
    text_only: bool = False
    min_confidence: float | None = None

    @classmethod
    def from_dict(cls, values: object, where: str) -> "CaptionSource":
        """A source from its config entry; an unknown key or a wrong type raises naming `where`."""
        if not isinstance(values, dict):
            optional = ", ".join(_SOURCE_KEYS[1:])
            raise ConfigError(f"{where}: expected an object with 'captions' (and optionally {optional})")
        unknown = sorted(set(values) - set(_SOURCE_KEYS))
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; known keys: {', '.join(_SOURCE_KEYS)}")
        if not isinstance(values.get("captions"), str) or not values["captions"]:
            raise ConfigError(f"{where}.captions: a caption file path is required")
        for key in ("image_dir", "split_list", "split"):
            if values.get(key) is not None and not isinstance(values[key], str):
                raise ConfigError(f"{where}.{key}: expected a string, got {values[key]!r}")
        weight = values.get("weight", 1.0)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not weight > 0:
            raise ConfigError(f"{where}.weight: expected a positive number, got {weight!r}")
        if not isinstance(values.get("text_only", False), bool):
            raise ConfigError(f"{where}.text_only: expected true or false, got {values['text_only']!r}")
        min_confidence = values.get("min_confidence")
        if min_confidence is not None:
            if isinstance(min_confidence, bool) or not isinstance(min_confidence, (int, float)):
                raise ConfigError(f"{where}.min_confidence: expected a number, got {min_confidence!r}")
            if values.get("text_only") or values.get("split_list") is not None:
                raise ConfigError(f"{where}.min_confidence: pseudo-captions take neither text_only nor split_list")
        return cls(**{**values, "weight": float(weight)})

    def resolved(self, data_root: str | None) -> "CaptionSource":
        if data_root is None:
            return self
        paths: dict[str, Any] = {
            name: str(Path(data_root) / value)
            for name in _PATH_FIELDS
            if (value := getattr(self, name)) is not None and not os.path.isabs(value)
        }
        return dataclasses.replace(self, **paths)


_SOURCE_KEYS = tuple(f.name for f in dataclasses.fields(CaptionSource))


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
        min_word_count, max_vocabulary: the vocabulary (training data only: every source's
            captions, text-only ones included).
        weight: how often each of this section's captions is seen per epoch, relative to the
            `mix` sources' weights.
        mix: more sources to train on at once, each an object with the keys of `CaptionSource`
            (captions, image_dir, split_list, split, weight, text_only, min_confidence); relative paths resolve
            against `data_root`. On the command line, a JSON list.
        photo_views: training augmentation: the training photos are also read as these views
            (`sat_tf.data.photo_views`: "jpeg-Q", "shrink-S", "sharpen-P"), one drawn per caption
            each time it is read, beside the original; with a feature cache each view is cached
            as `<cache>@<view>`. On the command line, comma-separated.
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
    weight: float = 1.0
    mix: tuple[dict, ...] = ()
    photo_views: tuple[str, ...] = ()

    def __post_init__(self):
        for name in ("num_images", "max_caption_words", "min_word_count", "grid_size", "captions_per_image"):
            if getattr(self, name) < 1:
                raise ConfigError(f"data.{name} must be positive; got {getattr(self, name)}")
        if not self.weight > 0:
            raise ConfigError(f"data.weight must be positive; got {self.weight}")
        self.sources()  # entries are checked when the config is built
        self.views()

    def views(self) -> list[PhotoView]:
        """The training photos' views, the original first (`photo_views`)."""
        return parse_photo_views(self.photo_views)

    def sources(self) -> list[CaptionSource]:
        """The `mix` entries as `CaptionSource`s (not resolved against `data_root`)."""
        if isinstance(self.mix, (str, dict)) or not isinstance(self.mix, (tuple, list)):
            raise ConfigError(f"data.mix: expected a list of sources, got {self.mix!r}")
        if self.mix and self.is_synthetic:
            raise ConfigError("data.mix: mixing sources needs a caption file in data.captions")
        return [CaptionSource.from_dict(entry, f"data.mix[{k}]") for k, entry in enumerate(self.mix)]

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
    With several sources (`DataConfig.mix`): record_source, the source of each record (0: the
    data section's own, k: mix entry k - 1) and source_weights, each source's weight; records
    of a text-only source have image_index `NO_PHOTO`.
    """

    images: np.ndarray | list[str]
    records: list[CaptionRecord]
    image_index: list[int]
    image_ids: list[str]
    objects: list | None = None
    record_source: list[int] | None = None
    source_weights: tuple[float, ...] = (1.0,)

    def __len__(self) -> int:
        return len(self.image_ids)

    @property
    def image_paths(self) -> list[str]:
        if isinstance(self.images, np.ndarray):
            raise ConfigError("this needs image files (a caption file), not the generated dataset")
        return list(self.images)

    def references(self) -> dict[str, list[str]]:
        """image id -> its reference captions (captions without a photo left out)."""
        paired = self.with_photos_only()
        return group_references(paired.records, [self.image_ids[i] for i in paired.image_index])

    def with_photos_only(self) -> "CaptionData":
        """The records that have a photo (for tasks that score captions against a photo's references)."""
        paired = [k for k, i in enumerate(self.image_index) if i != NO_PHOTO]
        if len(paired) == len(self.records):
            return self
        sources = self.record_source
        return dataclasses.replace(
            self,
            records=[self.records[k] for k in paired],
            image_index=[self.image_index[k] for k in paired],
            record_source=None if sources is None else [sources[k] for k in paired],
        )


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
    primary = CaptionSource(config.captions, config.image_dir, config.split_list, config.split, config.weight)
    sources = [primary, *(source.resolved(config.data_root) for source in config.sources())]
    paired_records: list[CaptionRecord] = []
    paired_source: list[int] = []
    text_records: list[CaptionRecord] = []
    text_source: list[int] = []
    for number, source in enumerate(sources):
        if source.text_only:
            read = read_text_captions(source.captions)
            text_records += read
            text_source += [number] * len(read)
            continue
        if source.min_confidence is not None:
            read = read_pseudo_captions(source.captions, source.min_confidence, source.image_dir)
        else:
            read = read_captions(source.captions, source.image_dir, source.split_list, source.split)
        read = _readable(read, source.captions, config, verbose)
        paired_records += read
        paired_source += [number] * len(read)
    paths, image_index = index_images(paired_records)
    weights = tuple(source.weight for source in sources)
    if len(sources) == 1:
        return CaptionData(paths, paired_records, image_index, paths)
    return CaptionData(
        paths,
        paired_records + text_records,
        image_index + [NO_PHOTO] * len(text_records),
        paths,
        record_source=paired_source + text_source,
        source_weights=weights,
    )


def _readable(records: list[CaptionRecord], where: str, config: DataConfig, verbose: bool) -> list[CaptionRecord]:
    """The records whose image can be read: all of them, or (with `skip_bad`) the rest, reported."""
    scan = scan_images([r.image_path for r in records], skip_unreadable=config.skip_bad)
    if not scan.skipped:
        return records
    if verbose:
        first = "; ".join(list(scan.skipped.values())[:3])
        print(f"skipped {len(scan.skipped)} unreadable image(s), e.g. {first}", file=sys.stderr)
    readable = set(scan.readable)
    records = [r for r in records if r.image_path in readable]
    if not records:
        raise ConfigError(f"{where}: no readable images left")
    return records


def decoder_inputs(source: FeatureCache | np.ndarray | Sequence[str], image_size: int) -> dict:
    """What a model decodes a split from: {"features": every entry} of a feature cache, or
    {"images": [N, S, S, 3]} from an image array or a list of image files (read at `image_size`)."""
    if isinstance(source, FeatureCache):
        return {"features": source.gather(np.arange(len(source)))}
    if isinstance(source, np.ndarray):
        return {"images": source}
    return {"images": np.stack([load_image(path, image_size) for path in source])}
