"""SavedModel for serving: image bytes in, captions out, decoding in the graph.

Written in TensorFlow Serving's layout `<export_dir>/<model_name>/<version>/` with signatures

  serving_default   image_bytes: string [B] (JPEG or PNG)  -> greedy caption
  caption_images    images: float32 [B, S, S, 3] (0..255)    -> greedy caption
  beam_search       image_bytes: string [B]                   -> best of a beam fixed at export

each returning caption (string [B]), tokens (int32 [B, T]), log_probs (float32 [B, T]), alphas
(float32 [B, T, L]) and confidence (float32 [B]: the calibrated confidence of a model with a
calibration, as the library's, else the geometric-mean token probability);
beam_search adds score (float32 [B]) and the k-best list, candidates (string [B, k], best first)
with candidate_scores (float32 [B, k]). With an ImageNet tagger (the default for EfficientNet-Lite
encoders with ImageNet weights), every signature also returns tags (string [B, 3], the caption
words the encoder checkpoint's ImageNet classifier sees, most probable first) and
tag_probabilities (float32 [B, 3]); the captions themselves are not tag-guided in the graph. The
graph holds only core TensorFlow ops (no tensorflow_text), so `tf.saved_model.load` works with
nothing but `tensorflow` imported.

Images are decoded in the graph under the image contract of `sat_tf_edge.images` (see
`decode_image_bytes`), within one grey level of the library's Pillow path.
"""

from __future__ import annotations

import os
from pathlib import Path

import keras
import tensorflow as tf

from sat_tf.export.graph_confidence import graph_confidence
from sat_tf.export.serving_settings import write_serving_settings
from sat_tf.inference import BeamSampler, GreedySampler
from sat_tf.inference.results import NOT_SURE_BELOW
from sat_tf.models.captioner import Captioner
from sat_tf.models.imagenet_tagger import ImageNetTagger, tag_outputs, tagger_for
from sat_tf.utils.atomic import atomic_path
from sat_tf_edge.calibration import ConfidenceCalibration
from sat_tf_edge.text import content_word_ids

SIGNATURES = ("serving_default", "caption_images", "beam_search")


def decode_image_bytes(image_bytes: tf.Tensor, image_size: int) -> tf.Tensor:
    """string [B] of JPEG/PNG/GIF/BMP bytes -> float32 [B, S, S, 3] in 0..255, following the image
    contract (`sat_tf_edge.images`) in graph ops: grayscale to RGB, 16-bit scaled to 8 bits,
    transparency composited over black, antialiased bilinear resize, rounded to integers. EXIF
    orientation is not applied here (`tf.io.decode_image` ignores it): clients send upright
    images, as `sat-tf serve` does for them."""

    def decode_one(data):
        def jpeg():  # libjpeg's accurate integer DCT, as Pillow decodes
            return tf.cast(tf.io.decode_jpeg(data, channels=3, dct_method="INTEGER_ACCURATE"), tf.float32)

        def png():  # 16-bit samples scaled by 255/65535 like the contract, alpha composited over black
            rgba = tf.floor(tf.cast(tf.io.decode_png(data, channels=4, dtype=tf.uint16), tf.float32) / 257.0)
            return tf.round(rgba[..., :3] * rgba[..., 3:] / 255.0)

        def other():  # GIF, BMP
            return tf.cast(tf.io.decode_image(data, channels=3, expand_animations=False), tf.float32)

        is_png = tf.equal(tf.strings.substr(data, 0, 4), b"\x89PNG")
        image = tf.cond(tf.io.is_jpeg(data), jpeg, lambda: tf.cond(is_png, png, other))
        image.set_shape([None, None, 3])
        image = tf.image.resize(image, (image_size, image_size), antialias=True)
        return tf.round(tf.clip_by_value(image, 0.0, 255.0))

    return tf.map_fn(
        decode_one, image_bytes, fn_output_signature=tf.TensorSpec((image_size, image_size, 3), tf.float32)
    )


def _caption_outputs(model: Captioner, outputs: dict, calibration: ConfidenceCalibration | None) -> dict:
    """The best caption of a sampler's outputs, with its confidence: the calibrated one
    (`graph_confidence`) when the model has a calibration, else exp(log p / length), as
    `sat_tf.inference.results.caption_confidence`."""
    tokens, log_probs, lengths = outputs["tokens"][:, 0], outputs["token_log_probs"][:, 0], outputs["lengths"][:, 0]
    if calibration is None:
        confidence = tf.exp(tf.reduce_sum(log_probs, axis=-1) / tf.cast(tf.maximum(lengths, 1), log_probs.dtype))
    else:
        confidence = graph_confidence(calibration, outputs, model.tokenizer.end_id)
    return {
        "caption": model.tokenizer.detokenize(tokens),
        "tokens": tokens,
        "log_probs": log_probs,
        "alphas": outputs["alphas"][:, 0],
        "confidence": confidence,
    }


def build_export_archive(
    model: Captioner,
    max_length: int = 20,
    beam_size: int = 3,
    xla: bool = False,
    tagger: ImageNetTagger | None = None,
    no_repeat_ngram_size: int = 0,
    forbid_unknown: bool = False,
    calibration: ConfidenceCalibration | None = None,
    no_repeat_content_words: bool = False,
) -> keras.export.ExportArchive:
    """The serving endpoints of `model` as a `keras.export.ExportArchive` (not yet written).

    With `xla`, the decoding loops are saved as XLA-compiled functions (`jit_compile=True`, compiled
    on the serving machine at the first call of each batch size): each step's ~100 small ops
    become a few fused kernels. `tf.saved_model.load` (and so `sat-tf serve`) runs them as is;
    stock TensorFlow Serving needs `--xla_cpu_compilation_enabled=true`. With `tagger`, every
    signature also returns the images' tags (`imagenet_tagger.tag_outputs`)."""
    size = model.encoder.image_size
    greedy, beam = GreedySampler(), BeamSampler(beam_size)

    def decoding(sampler):
        """features -> the sampler's outputs, XLA-compiled when asked (string ops stay outside)."""
        forbidden = (model.tokenizer.unk_id,) if forbid_unknown else ()
        once_only = content_word_ids(model.tokenizer.vocabulary) if no_repeat_content_words else ()

        def run(features):
            return sampler.run(
                model,
                features,
                max_length,
                forbidden_ids=forbidden,
                no_repeat_ngram_size=no_repeat_ngram_size,
                once_only_ids=once_only,
            )

        return tf.function(run, jit_compile=True) if xla else run

    greedy_decode, beam_decode = decoding(greedy), decoding(beam)

    def best_caption(decode, features):
        return _caption_outputs(model, decode(features), calibration)

    def with_tags(outputs, images):
        if tagger is None:
            return outputs
        return {**outputs, **tag_outputs(tagger.class_probabilities(images))}

    def caption_images(images):
        images = tf.cast(images, tf.float32)
        return with_tags(best_caption(greedy_decode, model.encode(images, training=False)), images)

    def caption_bytes(image_bytes):
        return caption_images(decode_image_bytes(image_bytes, size))

    def beam_search(image_bytes):
        images = decode_image_bytes(image_bytes, size)
        features = model.encode(images, training=False)
        outputs = beam_decode(features)
        best = _caption_outputs(model, outputs, calibration)
        # the k-best list: every beam's caption and score, best first
        tokens = outputs["tokens"]
        candidates = model.tokenizer.detokenize(tf.reshape(tokens, [-1, tf.shape(tokens)[2]]))
        return with_tags(
            {
                **best,
                "score": outputs["scores"][:, 0],
                "candidates": tf.reshape(candidates, tf.shape(tokens)[:2]),
                "candidate_scores": outputs["scores"],
            },
            images,
        )

    archive = keras.export.ExportArchive()
    archive.track(model)
    if tagger is not None:
        archive.track(tagger.network)
    bytes_spec = [tf.TensorSpec([None], tf.string, name="image_bytes")]
    archive.add_endpoint("serving_default", caption_bytes, input_signature=bytes_spec)
    archive.add_endpoint(
        "caption_images",
        caption_images,
        input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32, name="images")],
    )
    archive.add_endpoint("beam_search", beam_search, input_signature=bytes_spec)
    return archive


def export_saved_model(
    model: Captioner,
    export_dir: str | os.PathLike,
    model_name: str = "sat_tf",
    version: int = 1,
    max_length: int = 20,
    beam_size: int = 3,
    xla: bool = False,
    tags: bool | None = None,
    no_repeat_ngram_size: int = 0,
    forbid_unknown: bool = False,
    not_sure_below: float = NOT_SURE_BELOW,
    calibration: ConfidenceCalibration | None = None,
    no_repeat_content_words: bool = False,
) -> Path:
    """Writes the serving SavedModel to `<export_dir>/<model_name>/<version>/`, atomically.

    Args:
        model: a trained `Captioner`.
        export_dir: the model base path TensorFlow Serving watches.
        model_name: the name clients use (`/v1/models/<model_name>`).
        version: a positive integer; an existing version is replaced.
        max_length: most tokens per caption.
        beam_size: the beam of the `beam_search` signature.
        xla: save the decoding loops XLA-compiled (see `build_export_archive`).
        tags: add the encoder checkpoint's ImageNet tags to every signature's outputs; None (the
            default): when the model's encoder is an EfficientNet-Lite with ImageNet weights.
        no_repeat_ngram_size: the decoding loops block repeated n-grams (0: off), as the library's.
        forbid_unknown: the decoding loops never emit `<unk>`, as the library's with that setting.
        no_repeat_content_words: the decoding loops say each content word once, as the library's.
        not_sure_below: the model's "not sure" threshold (`DecodingConfig.not_sure_below`), kept in
            `assets.extra/sat_tf.json` (TF Serving's folder for files beside the graph) for
            `sat-tf serve`'s page.
        calibration: the model's confidence calibration: every signature's confidence is then
            the calibrated one (`sat_tf.export.graph_confidence`), as the library's.

    Returns:
        The version directory.

    Example:
        >>> path = export_saved_model(model, "serving", model_name="captioner")
        >>> served = tf.saved_model.load(str(path))
        >>> served.signatures["serving_default"](image_bytes=tf.constant([jpeg_bytes]))["caption"]
    """
    if version < 1:
        raise ValueError(f"version must be a positive integer, got {version}")
    target = Path(export_dir) / model_name / str(version)
    # TF Serving polls the base path: it must never see a half-written version. atomic_path writes
    # a hidden (non-numeric, so ignored) sibling and renames it into place.
    with atomic_path(target) as staging:
        build_export_archive(
            model,
            max_length,
            beam_size,
            xla,
            tagger_for(model.encoder.backbone_name, tags),
            no_repeat_ngram_size,
            forbid_unknown,
            calibration,
            no_repeat_content_words,
        ).write_out(str(staging), verbose=False)
        write_serving_settings(staging, {"not_sure_below": not_sure_below})
    return target
