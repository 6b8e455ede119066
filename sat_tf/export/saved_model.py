"""SavedModel for serving: image bytes in, captions out, decoding in the graph.

Written in TensorFlow Serving's layout `<export_dir>/<model_name>/<version>/` with signatures

  serving_default   image_bytes: string [B] (JPEG or PNG)  -> greedy caption
  caption_images    images: float32 [B, S, S, 3] (0..255)    -> greedy caption
  beam_search       image_bytes: string [B]                   -> best of a beam fixed at export

each returning caption (string [B]), tokens (int32 [B, T]), log_probs (float32 [B, T]) and alphas
(float32 [B, T, L]); beam_search adds score (float32 [B]). The graph holds only core TensorFlow
ops (no tensorflow_text), so `tf.saved_model.load` works with nothing but `tensorflow` imported.

Images are decoded with `tf.io.decode_image` and resized to the encoder's input with antialiased
bilinear resizing, rounded to integers like the library's Pillow path (`sat_tf.data.images`).
"""

from __future__ import annotations

import os
from pathlib import Path

import keras
import tensorflow as tf

from sat_tf.inference.beam_search import BeamSearchDecoder
from sat_tf.inference.greedy import GreedyDecoder
from sat_tf.models.captioner import Captioner
from sat_tf.utils.atomic import atomic_path

SIGNATURES = ("serving_default", "caption_images", "beam_search")


def decode_image_bytes(image_bytes: tf.Tensor, image_size: int) -> tf.Tensor:
    """string [B] of JPEG/PNG/GIF/BMP bytes -> float32 [B, S, S, 3] in 0..255."""

    def decode_one(data):
        image = tf.io.decode_image(data, channels=3, expand_animations=False)
        image = tf.image.resize(image, (image_size, image_size), antialias=True)
        return tf.round(tf.clip_by_value(image, 0.0, 255.0))

    return tf.map_fn(decode_one, image_bytes,
                     fn_output_signature=tf.TensorSpec((image_size, image_size, 3), tf.float32))


def _caption_outputs(model: Captioner, tokens, log_probs, alphas) -> dict:
    return {"caption": model.tokenizer.detokenize(tokens), "tokens": tokens, "log_probs": log_probs,
            "alphas": alphas}


def build_export_archive(model: Captioner, max_length: int = 20, beam_size: int = 3) -> keras.export.ExportArchive:
    """The serving endpoints of `model` as a `keras.export.ExportArchive` (not yet written)."""
    size = model.encoder.image_size
    # Plain graphs in the SavedModel: XLA-compiled functions would tie it to this CPU.
    greedy = GreedyDecoder(model, max_length, jit_compile=False)
    beam = BeamSearchDecoder(model, beam_size, max_length, jit_compile=False)

    def caption_images(images):
        features = model.encode(tf.cast(images, tf.float32), training=False)
        return _caption_outputs(model, *greedy._decode(features))

    def caption_bytes(image_bytes):
        return caption_images(decode_image_bytes(image_bytes, size))

    def beam_search(image_bytes):
        features = model.encode(decode_image_bytes(image_bytes, size), training=False)
        tokens, scores, _, token_log_probs, alphas, _ = beam._beam_search(features)
        outputs = _caption_outputs(model, tokens[:, 0], token_log_probs[:, 0], alphas[:, 0])
        return {**outputs, "score": scores[:, 0]}

    archive = keras.export.ExportArchive()
    archive.track(model)
    bytes_spec = [tf.TensorSpec([None], tf.string, name="image_bytes")]
    archive.add_endpoint("serving_default", caption_bytes, input_signature=bytes_spec)
    archive.add_endpoint("caption_images", caption_images,
                         input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32, name="images")])
    archive.add_endpoint("beam_search", beam_search, input_signature=bytes_spec)
    return archive


def export_saved_model(
    model: Captioner,
    export_dir: str | os.PathLike,
    model_name: str = "sat_tf",
    version: int = 1,
    max_length: int = 20,
    beam_size: int = 3,
) -> Path:
    """Writes the serving SavedModel to `<export_dir>/<model_name>/<version>/`, atomically.

    Args:
        model: a trained `Captioner`.
        export_dir: the model base path TensorFlow Serving watches.
        model_name: the name clients use (`/v1/models/<model_name>`).
        version: a positive integer; an existing version is replaced.
        max_length: most tokens per caption.
        beam_size: the beam of the `beam_search` signature.

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
        build_export_archive(model, max_length, beam_size).write_out(str(staging), verbose=False)
    return target
