"""Captioning image files from settings: what `sat-tf caption` runs, and the decoding every
workflow shares.

Example:
    >>> loaded = load_for_captioning(["everyday_selftrained_lite0_448"])    # the model and its decoding settings
    >>> captioned = caption_files(loaded.model, ["photo.jpg"], loaded.decoding, calibration=loaded.calibration)
    >>> captioned.records()[0]["caption"]
"""

from __future__ import annotations

import dataclasses
import itertools
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from sat_tf.data.images import ImageLoadError, load_image
from sat_tf.errors import ConfigError
from sat_tf.inference import CaptionCandidates, CaptionerEnsemble, generate_captions
from sat_tf.inference.decoding_config import DecodingConfig
from sat_tf.inference.results import NOT_SURE_BELOW
from sat_tf.models import efficientnet_lite
from sat_tf.models.captioner import Captioner
from sat_tf.models.imagenet_tagger import Tag, shared_tagger
from sat_tf.utils.json_lines import JsonLinesOutput
from sat_tf.workflows.model_reference import resolve_model
from sat_tf.workflows.models import as_one_captioner
from sat_tf.workflows.run_config import merge, resolve_run_config
from sat_tf_edge.calibration import ConfidenceCalibration
from sat_tf_edge.confidence import caption_record


def decode(model, decoding: DecodingConfig, images=None, features=None, tags=None) -> CaptionCandidates:
    """Captions with the configured strategy (beam size, length penalty, `<unk>` filtering, tag
    guidance with the images' `tags`, computed here when not given)."""
    guidance = None
    if decoding.tag_guidance != "off":
        if images is None:
            raise ConfigError("decoding.tag_guidance needs images (the tagger reads pixels), not cached features")
        tags = image_tags(model, images) if tags is None else tags
        if tags is None and decoding.tag_guidance == "on":
            raise ConfigError(
                f"decoding.tag_guidance 'on' needs an EfficientNet-Lite encoder with ImageNet weights; "
                f"this model's is '{getattr(model.encoder, 'backbone_name', '?')}'"
            )
        guidance = decoding.guidance() if tags is not None else None
    return generate_captions(
        model,
        images=images,
        features=features,
        sampler=decoding.sampler(),
        max_length=decoding.max_length,
        batch_size=decoding.decode_batch_size,
        forbid_unknown=decoding.forbid_unknown,
        no_repeat_ngram_size=decoding.no_repeat_ngram_size,
        no_repeat_content_words=decoding.no_repeat_content_words,
        guidance=guidance,
        tags=tags if guidance is not None else None,
    )


def image_tags(model, images) -> list[list[Tag]] | None:
    """Each image's ImageNet tags from the model's own encoder checkpoint, or None when its encoder
    is not an ImageNet EfficientNet-Lite (the tagger needs that classifier)."""
    backbone = getattr(model.encoder, "backbone_name", None)
    if backbone not in efficientnet_lite.VARIANTS:
        return None
    return shared_tagger(backbone).tags(images)


def decode_with_tags(model, decoding: DecodingConfig, images) -> tuple[CaptionCandidates, list | None, list[bool]]:
    """(candidates, tags per image or None, which captions the tags constrained)."""
    tags = image_tags(model, images)
    candidates = decode(model, decoding, images=images, tags=tags)
    guided = candidates.guided.tolist() if candidates.guided is not None else [False] * len(images)
    return candidates, tags, guided


@dataclasses.dataclass
class CaptionedFiles:
    """Captions of image files: the readable ones, their candidates, and why others were skipped."""

    paths: list[str]
    candidates: CaptionCandidates | None  # None when no photo of the batch could be read
    unreadable: list[tuple[str, str]]  # (path, why) of each photo that could not be read
    confidence: np.ndarray  # per image: calibrated when the model has a calibration (`CaptionCandidates.confidence`)
    tags: list[list[Tag]] | None = None  # per image, its ImageNet tags (when the encoder has a tagger)
    constrained: list[bool] | None = None  # per image, whether the tags constrained its caption
    not_sure_below: float = NOT_SURE_BELOW  # the model's "not sure" threshold (DecodingConfig)

    @property
    def skipped(self) -> list[str]:
        """Why each unreadable photo was skipped (the message names the file)."""
        return [error for _, error in self.unreadable]

    def unreadable_records(self) -> list[dict]:
        """One JSON-ready record per unreadable photo: its path and why it could not be read."""
        return [{"image": path, "error": error} for path, error in self.unreadable]

    def records(self) -> list[dict]:
        """One JSON-ready record per image: the caption, its confidence and whether it is below
        the "not sure" threshold, the k-best list, the tags and whether they guided the caption."""
        if self.candidates is None:
            return []
        best = self.candidates.best()
        records = []
        for index, path in enumerate(self.paths):
            records.append(
                caption_record(
                    path,
                    best.texts[index],
                    best.log_probs[index].sum(),
                    self.confidence[index],
                    self.confidence[index] < self.not_sure_below,
                    self.candidates.texts[index],
                    self.tags[index] if self.tags is not None else [],
                    bool(self.constrained and self.constrained[index]),
                )
            )
        return records


def caption_files(
    model,
    paths: Sequence[str],
    decoding: DecodingConfig,
    skip_bad: bool = False,
    with_tags: bool = False,
    calibration: ConfidenceCalibration | None = None,
    tags_when_not_sure: bool = False,
) -> CaptionedFiles:
    """Reads image files (through the library's one image contract) and captions them; with
    `with_tags` (or tag guidance on), also tags them, and with `tags_when_not_sure` tags the photos
    whose caption is "not sure" (what `sat-tf caption` shows beside it; the tagger loads only then);
    with the model's `calibration`, the confidence is the calibrated one."""
    loaded = [_read_photo(path, model.encoder.image_size) for path in paths]
    errors = [error for _, _, error in loaded if error is not None]
    if errors and not skip_bad:
        raise errors[0]
    if len(errors) == len(loaded):
        raise ConfigError("no readable images")
    return caption_loaded(model, loaded, decoding, with_tags, calibration, tags_when_not_sure)


def caption_stream(
    model,
    paths: Iterable[str],
    decoding: DecodingConfig,
    photos_per_batch: int = 32,
    workers: int = 2,
    with_tags: bool = False,
    calibration: ConfidenceCalibration | None = None,
    tags_when_not_sure: bool = False,
) -> Iterator[CaptionedFiles]:
    """Captions any number of image files as they come, batch by batch (`caption_files`' settings):
    `workers` threads decode the next batch's photos while the model captions this one, so memory
    holds two batches whatever the number of photos. Unreadable photos do not stop it: each batch's
    `unreadable` says which and why.

    Example:
        >>> for batch in caption_stream(model, find_photos(["photos/"]), decoding):
        ...     for record in batch.records() + batch.unreadable_records():
        ...         print(record)
    """
    if photos_per_batch < 1:
        raise ConfigError(f"photos_per_batch must be >= 1; got {photos_per_batch}")
    size = model.encoder.image_size
    iterator = iter(paths)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:

        def submit_next() -> list:
            return [pool.submit(_read_photo, path, size) for path in itertools.islice(iterator, photos_per_batch)]

        pending = submit_next()
        while pending:
            loaded = [future.result() for future in pending]
            pending = submit_next()  # decoded while this batch is captioned
            yield caption_loaded(model, loaded, decoding, with_tags, calibration, tags_when_not_sure)


@dataclasses.dataclass
class CaptionRun:
    """What `caption_photos` did: photos captioned, why others were skipped, and the records it
    kept (only without a JSON Lines output, whose records are on disk instead)."""

    captioned: int = 0
    skipped: list[str] = dataclasses.field(default_factory=list)
    records: list[dict] = dataclasses.field(default_factory=list)


def caption_photos(
    loaded: LoadedCaptioner,
    photos: Sequence[str],
    output: JsonLinesOutput | None = None,
    must_read: frozenset[str] = frozenset(),
    photos_per_batch: int = 32,
    workers: int = 2,
    with_tags: bool = False,
    on_batch: Callable[[CaptionedFiles], None] | None = None,
) -> CaptionRun:
    """Captions a collection of photos as `sat-tf caption` does (`caption_stream`, the model's
    calibration, the tags of "not sure" photos), batch by batch: each batch's records (and an
    `{"image", "error"}` record per unreadable photo) go to `output` as it finishes, synced, or are
    kept in memory without one; `on_batch` sees every batch (printing, plots, progress).

    Raises:
        ConfigError: a photo of `must_read` cannot be read, or none of `photos` can.
    """
    run = CaptionRun()
    batches = caption_stream(
        loaded.model,
        photos,
        loaded.decoding,
        photos_per_batch=photos_per_batch,
        workers=workers,
        with_tags=with_tags,
        calibration=loaded.calibration,
        tags_when_not_sure=True,  # what a "not sure" photo may show
    )
    for batch in batches:
        for path, error in batch.unreadable:
            if path in must_read:
                raise ConfigError(error)
        if on_batch is not None:
            on_batch(batch)
        run.captioned += len(batch.paths)
        run.skipped += batch.skipped
        if output is None:
            run.records += batch.records()
            continue
        for record in batch.records() + batch.unreadable_records():
            output.write(record)
        output.sync()
    if photos and not run.captioned:
        raise ConfigError("no readable images" + (f": {run.skipped[0]}" if run.skipped else ""))
    return run


def _read_photo(path: str, size: int) -> tuple[str, np.ndarray | None, ImageLoadError | None]:
    """(path, pixels, None), or (path, None, why it cannot be read)."""
    try:
        return str(path), load_image(path, size), None
    except ImageLoadError as exc:
        return str(path), None, exc


def caption_loaded(
    model,
    loaded: Sequence[tuple[str, np.ndarray | None, ImageLoadError | None]],
    decoding: DecodingConfig,
    with_tags: bool = False,
    calibration: ConfidenceCalibration | None = None,
    tags_when_not_sure: bool = False,
) -> CaptionedFiles:
    """Captions photos already read (`(path, pixels, error)`, as `_read_photo` gives them)."""
    paths = [path for path, pixels, _ in loaded if pixels is not None]
    pixels = [pixels for _, pixels, _ in loaded if pixels is not None]
    unreadable = [(path, str(error)) for path, _, error in loaded if error is not None]
    if not pixels:
        return CaptionedFiles([], None, unreadable, np.zeros(0))
    tags, constrained = None, None
    if with_tags or decoding.tag_guidance != "off":
        candidates, tags, constrained = decode_with_tags(model, decoding, np.stack(pixels))
    else:
        candidates = decode(model, decoding, images=np.stack(pixels))
    confidence = candidates.confidence(calibration, model.tokenizer.end_id)
    if tags is None and tags_when_not_sure:
        tags = _tags_of_doubted(model, pixels, confidence < decoding.not_sure_below)
    return CaptionedFiles(paths, candidates, unreadable, confidence, tags, constrained, decoding.not_sure_below)


def _tags_of_doubted(model, pixels: list, doubted: np.ndarray) -> list[list[Tag]] | None:
    """Tags of the doubted photos ([] for the others); None when there are none or no tagger."""
    rows = np.flatnonzero(doubted)
    seen = image_tags(model, np.stack([pixels[row] for row in rows])) if len(rows) else None
    if seen is None:
        return None
    tags: list[list[Tag]] = [[] for _ in pixels]
    for row, row_tags in zip(rows, seen):
        tags[row] = row_tags
    return tags


@dataclasses.dataclass
class LoadedCaptioner:
    """A model ready to caption, with the decoding settings and the confidence calibration (None
    when it has none) that go with it."""

    model: Captioner | CaptionerEnsemble
    decoding: DecodingConfig
    calibration: ConfidenceCalibration | None = None


def decoding_for(
    model_reference: str | os.PathLike,
    recipe: str | None = None,
    config_file: str | os.PathLike | None = None,
    overrides: dict | None = None,
) -> DecodingConfig:
    """Decoding settings of a model: library defaults <- its own (the run's `run_config.json`, a
    preset's config, its calibration's "not sure" threshold) <- recipe <- config file <-
    `overrides` (`{"decoding": {...}}`, e.g. flags)."""
    resolved = resolve_model(model_reference)
    decoding = _decoding_over(resolved.decoding, recipe, config_file, overrides)
    return _with_calibrated_threshold(decoding, resolved.calibration, overrides)


def _with_calibrated_threshold(decoding: DecodingConfig, calibration, overrides: dict | None) -> DecodingConfig:
    """The calibration's "not sure" threshold, unless the caller set one."""
    if calibration is None or "not_sure_below" in (overrides or {}).get("decoding", {}):
        return decoding
    return dataclasses.replace(decoding, not_sure_below=calibration.not_sure_below)


def _decoding_over(own: DecodingConfig | None, recipe, config_file, overrides) -> DecodingConfig:
    base = {"decoding": dataclasses.asdict(own)} if own is not None else {}
    return resolve_run_config(recipe, config_file, merge(base, overrides or {})).decoding


def load_for_captioning(
    references: Sequence[str | os.PathLike],
    recipe: str | None = None,
    config_file: str | os.PathLike | None = None,
    overrides: dict | None = None,
    as_caption_command: bool = False,
) -> LoadedCaptioner:
    """Loads one model (or an ensemble of several) and its decoding settings (see `decoding_for`,
    read from the first model), reading each model's files once.

    Args:
        references: `.keras` files, run folders or preset names; several decode as an ensemble
            (whose confidence is the raw one: a calibration belongs to one model).
        recipe, config_file, overrides: settings layered over the model's own decoding settings.
        as_caption_command: decode as `sat-tf caption` does: with the model's
            `caption_tag_guidance`, unless `overrides` set `tag_guidance`.
    """
    if not references:
        raise ConfigError("no model given")
    resolved = [resolve_model(reference) for reference in references]
    models = [model.load() for model in resolved]
    first = resolved[0]  # the settings come from the first model
    calibration = first.calibration if len(resolved) == 1 else None
    decoding = _decoding_over(first.decoding, recipe, config_file, overrides)
    if as_caption_command and "tag_guidance" not in (overrides or {}).get("decoding", {}):
        decoding = dataclasses.replace(decoding, tag_guidance=decoding.caption_tag_guidance)
    decoding = _with_calibrated_threshold(decoding, calibration, overrides)
    return LoadedCaptioner(as_one_captioner(models), decoding, calibration)
