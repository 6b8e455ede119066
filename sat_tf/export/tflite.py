"""TFLite export: an image encoder and a quantized decoder step, for phones and edge boards.

Two files with named signatures, builtin ops only (no Flex / SELECT_TF_OPS):

  image_encoder.tflite  "encode": image float32 [1, S, S, 3] (0..255, decoded and resized on the
                        host) -> the per-image inputs of every decoding step: attention_keys
                        [1, L, A], context_gates [1, L, 4H], context_outputs [1, L, E] and the
                        initial hidden, cell [1, H] (`AttentionDecoder.step_constants` and
                        `initial_state`); for an ImageNet EfficientNet-Lite encoder also
                        class_probabilities [1, 1000], its checkpoint's classifier (the tags).
  decoder_step.tflite   "step": those per-image tensors (repeated per beam), hidden, cell [B, H],
                        previous_token int32 [B] -> log_probs [B, V], hidden, cell, alpha [B, L].

plus `sat_tf_edge.json` (vocabulary, special ids, image size, region grid, max length), everything
the TensorFlow-free runtime (`sat_tf_edge`, installed from `export/`) needs; its format is
`sat_tf_edge.manifest.EdgeManifest`, shared by both sides.

Quantization types follow TF Model Garden: "fp32", "fp16" (float16 weights), "dynamic"
(dynamic-range int8 weights, float activations; the decoder's default) and "int8" (full integer
with a representative dataset drawn from the real input pipeline, float fallback for ops without
an int8 kernel). Conversion goes through a SavedModel (`keras.export.ExportArchive`) with
`TFLiteConverter.from_saved_model`, never from raw Keras variables.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable, Iterable, Iterator

import keras
import numpy as np
import tensorflow as tf

from sat_tf.inference import GreedySampler
from sat_tf.models.captioner import Captioner
from sat_tf.models.decoder import DecoderState, StepConstants
from sat_tf.models.imagenet_tagger import ImageNetTagger, class_table, tagger_for
from sat_tf.utils.atomic import atomic_path
from sat_tf_edge.calibration import ConfidenceCalibration
from sat_tf_edge.manifest import DECODER_FILE, ENCODER_FILE, MANIFEST_FILE, EdgeManifest

QUANTIZATIONS = ("fp32", "fp16", "dynamic", "int8")
PER_IMAGE_INPUTS = ("attention_keys", "context_gates", "context_outputs")


def _check_exportable(model: Captioner) -> None:
    decoder = model.decoder
    if decoder.attention_mode == "hard" and decoder.hard_inference == "sample":
        raise ValueError(
            "hard_inference='sample' draws random numbers, which TFLite builtins cannot; "
            "export with 'argmax' or 'expectation'"
        )


def _archive_of(*layers) -> keras.export.ExportArchive:
    """An archive tracking only the given layers: tracking the whole Captioner would also export
    the tokenizer's lookup table, whose initializer TFLite builtins cannot run."""
    archive = keras.export.ExportArchive()
    for layer in layers:
        archive.track(layer)
    return archive


def encoder_archive(model: Captioner, tagger: ImageNetTagger | None = None) -> keras.export.ExportArchive:
    """SavedModel endpoint "encode": image -> per-image decoder inputs and initial state (and, with
    `tagger`, the encoder checkpoint's ImageNet class probabilities, for the tags)."""
    size = model.encoder.image_size
    decoder = model.decoder

    def encode(image):
        features = model.encode(image, training=False)
        constants = decoder.step_constants(features)
        state = decoder.initial_state(features)
        outputs = {
            "attention_keys": constants.attention_keys,
            "context_gates": constants.context_gates,
            "context_outputs": constants.context_outputs,
            "hidden": state.hidden,
            "cell": state.cell,
        }
        if tagger is not None:
            outputs["class_probabilities"] = tagger.class_probabilities(image)
        return outputs

    archive = _archive_of(model.encoder, model.decoder, *([tagger.network] if tagger is not None else []))
    archive.add_endpoint(
        "encode", encode, input_signature=[tf.TensorSpec([1, size, size, 3], tf.float32, name="image")]
    )
    return archive


def decoder_step_archive(model: Captioner, batch: int | None = None) -> keras.export.ExportArchive:
    """SavedModel endpoint "step": one decoding step for a batch of beams (any batch, or exactly
    `batch` rows: runtimes that cannot resize inputs, such as LiteRT.js, need a fixed shape)."""
    decoder = model.decoder
    height, width = model.feature_grid
    regions, hidden_dim = height * width, decoder.hidden_dim
    spec = lambda name, *shape: tf.TensorSpec([batch, *shape], tf.float32, name=name)  # noqa: E731

    def step(attention_keys, context_gates, context_outputs, hidden, cell, previous_token):
        constants = StepConstants(attention_keys, context_gates, context_outputs, decoder.fused_hidden_kernel())
        out = decoder.step(constants, DecoderState(hidden, cell), previous_token)
        return {"log_probs": out.log_probs, "hidden": out.state.hidden, "cell": out.state.cell, "alpha": out.alpha}

    archive = _archive_of(model.decoder)
    archive.add_endpoint(
        "step",
        step,
        input_signature=[
            spec("attention_keys", regions, decoder.attention_dim),
            spec("context_gates", regions, 4 * hidden_dim),
            spec("context_outputs", regions, decoder.embedding_dim),
            spec("hidden", hidden_dim),
            spec("cell", hidden_dim),
            tf.TensorSpec([batch], tf.int32, name="previous_token"),
        ],
    )
    return archive


def convert(
    saved_model_dir: str,
    signature: str,
    quantization: str,
    representative_dataset: Callable[[], Iterator[dict]] | None = None,
) -> bytes:
    """Converts one signature of a SavedModel to a TFLite flatbuffer with builtin ops only."""
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization must be one of {QUANTIZATIONS}, got '{quantization}'")
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir, signature_keys=[signature])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantization == "fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quantization == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif quantization == "int8":
        if representative_dataset is None:
            raise ValueError("int8 quantization needs a representative dataset")
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative_dataset
        # Integer kernels where they exist, float fallback elsewhere (log-softmax, some element-wise ops).
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
    return converter.convert()


def representative_inputs(
    model: Captioner, images: Iterable[np.ndarray], max_length: int = 20
) -> tuple[list[dict], list[dict]]:
    """Calibration inputs for both files from real images: the encoder's input per image, and the
    step inputs met while greedily captioning them with the Keras model (so int8 ranges cover the
    states and tokens the deployed decoder will see)."""
    decoder, tokenizer = model.decoder, model.tokenizer
    encoder_samples, step_samples = [], []
    for image in images:
        image = np.asarray(image, np.float32)[np.newaxis]
        encoder_samples.append({"image": image})
        features = model.encode(image, training=False)
        caption = GreedySampler().run(model, features, max_length)  # the region features, encoded once
        tokens, length = caption["tokens"].numpy()[0, 0], int(caption["lengths"].numpy()[0, 0])
        constants, state = decoder.step_constants(features), decoder.initial_state(features)
        per_image = {name: getattr(constants, name).numpy() for name in PER_IMAGE_INPUTS}
        # The inputs of every step that produced the greedy caption, replayed word by word.
        previous = [tokenizer.start_id] + tokens[: length - 1].tolist()
        for token in previous:
            token = tf.constant([token], tf.int32)
            step_samples.append(
                {
                    **per_image,
                    "hidden": state.hidden.numpy(),
                    "cell": state.cell.numpy(),
                    "previous_token": token.numpy(),
                }
            )
            state = decoder.step(constants, state, token).state
    return encoder_samples, step_samples


def export_tflite(
    model: Captioner,
    output_dir: str | os.PathLike,
    encoder_quantization: str = "fp32",
    decoder_quantization: str = "dynamic",
    representative_images: Iterable[np.ndarray] | None = None,
    max_length: int = 20,
    decoding: dict | None = None,
    calibration: ConfidenceCalibration | None = None,
    decoder_batch: int | None = None,
    tags: bool | None = None,
) -> dict[str, Path]:
    """Writes image_encoder.tflite, decoder_step.tflite and sat_tf_edge.json to `output_dir`.

    Args:
        model: a trained `Captioner`.
        output_dir: created if missing; each file is written atomically.
        encoder_quantization, decoder_quantization: one of `QUANTIZATIONS`.
        representative_images: images [S, S, 3] (0..255) from the real input pipeline; needed
            for "int8" (a few dozen are enough).
        max_length: most tokens per caption, recorded for the runtime.
        decoding: the settings the edge runtime decodes with by default ({"beam_size",
            "length_penalty", "forbid_unknown", "no_repeat_ngram_size", "not_sure_below"}; missing
            ones: greedy, unfiltered, the library's threshold), recorded in the manifest.
        calibration: the model's confidence calibration, recorded in the manifest so the edge
            runtime gives the library's calibrated confidence.
        decoder_batch: a fixed batch for the decoder step (the beam size; for runtimes that
            cannot resize inputs, LiteRT.js); None: any batch.
        tags: the encoder file also gives the encoder checkpoint's ImageNet class probabilities
            (output "class_probabilities" [1, 1000]) and the manifest the class table, so the edge
            runtime and the browser tell what a photo may show as the library does; None (the
            default): when the encoder is an EfficientNet-Lite with ImageNet weights.

    Returns:
        {"encoder": path, "decoder": path, "manifest": path}.

    Example:
        >>> paths = export_tflite(model, "edge", decoder_quantization="dynamic")
        >>> # then, without TensorFlow: sat-tf-edge edge photo.jpg
    """
    _check_exportable(model)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    encoder_samples = step_samples = None
    if "int8" in (encoder_quantization, decoder_quantization):
        if representative_images is None:
            raise ValueError("int8 quantization needs representative_images")
        encoder_samples, step_samples = representative_inputs(model, representative_images, max_length)
        if decoder_batch is not None:  # each calibration row repeated to the fixed batch
            step_samples = [{k: np.repeat(v, decoder_batch, axis=0) for k, v in s.items()} for s in step_samples]
    tagger = tagger_for(model.encoder.backbone_name, tags)
    paths = {}
    with tempfile.TemporaryDirectory(prefix="sat_tf_tflite_") as scratch:
        for key, archive, signature, quantization, samples, name in (
            ("encoder", encoder_archive(model, tagger), "encode", encoder_quantization, encoder_samples, ENCODER_FILE),
            (
                "decoder",
                decoder_step_archive(model, decoder_batch),
                "step",
                decoder_quantization,
                step_samples,
                DECODER_FILE,
            ),
        ):
            saved_model_dir = os.path.join(scratch, key)
            archive.write_out(saved_model_dir, verbose=False)
            dataset = (lambda samples=samples: iter(samples)) if samples else None
            flatbuffer = convert(saved_model_dir, signature, quantization, dataset)
            paths[key] = output_dir / name
            with atomic_path(paths[key]) as tmp:
                Path(tmp).write_bytes(flatbuffer)
    tokenizer = model.tokenizer
    manifest = EdgeManifest(
        image_size=model.encoder.image_size,
        feature_grid=model.feature_grid,
        max_length=max_length,
        vocabulary=list(tokenizer.vocabulary),
        special_ids={
            "pad": tokenizer.pad_id,
            "start": tokenizer.start_id,
            "end": tokenizer.end_id,
            "unknown": tokenizer.unk_id,
        },
        quantization={"encoder": encoder_quantization, "decoder": decoder_quantization},
        files={"encoder": ENCODER_FILE, "decoder": DECODER_FILE},
        attention_mode=model.decoder.attention_mode,
        decoding=dict(decoding or {}),
        confidence_calibration=None if calibration is None else calibration.to_json(),
        decoder_batch=decoder_batch,
        imagenet_classes=None if tagger is None else dict(zip(("names", "words"), class_table())),
    )
    paths["manifest"] = output_dir / MANIFEST_FILE
    with atomic_path(paths["manifest"]) as tmp:
        manifest.write(tmp)
    return paths
