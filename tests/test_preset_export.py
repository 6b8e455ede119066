"""Every shipped preset exports to TFLite, and the default in every quantization: the files load in the
edge runtime, their outputs are numbers (a converted model can give NaN everywhere), and the float
exports caption as the library does. int8 runs for every preset: its calibration replays captions
through the fine-tuned encoder tops the presets have (a path that once failed for them)."""

import numpy as np
import pytest

from sat_tf.cli.common import DEFAULT_PRESET
from sat_tf.data import synthetic
from sat_tf.export.tflite import QUANTIZATIONS, export_tflite
from sat_tf.inference import BeamSampler, generate_captions
from sat_tf.models.preset import preset_names
from sat_tf.workflows.caption import load_for_captioning

PHOTO_SEED = 4


def _photos(size: int, count: int = 2) -> list[np.ndarray]:
    return list(synthetic.generate(count, seed=PHOTO_SEED, image_size=size).images)


def _export_and_caption(name: str, quantization: str, folder):
    from sat_tf_edge import EdgeCaptioner

    loaded = load_for_captioning([name])
    (model,) = loaded.model.members()
    photos = _photos(model.encoder.image_size)
    # the ImageNet classifier rides in the float export here (the int8 page test carries it too);
    # the other exports leave it out, which saves converting it once per preset and quantization
    with_tags = quantization == "fp32"
    export_tflite(
        model, folder, quantization, quantization, photos if quantization == "int8" else None, 12,
        decoding=loaded.decoding.edge_settings(), calibration=loaded.calibration, tags=with_tags,
    )  # fmt: skip
    edge = EdgeCaptioner(folder)
    captions = [edge.caption(photo[np.newaxis].astype(np.float32)) for photo in photos]
    for caption in captions:
        assert caption.tokens and np.all(np.isfinite(caption.log_probs)) and np.all(np.isfinite(caption.alphas))
        assert 0.0 < caption.confidence < 1.0 and caption.text
    return model, loaded, photos, captions, edge


@pytest.mark.parametrize("name", preset_names())
def test_every_shipped_preset_exports_as_int8(name, tmp_path):
    _export_and_caption(name, "int8", tmp_path / name)


@pytest.mark.parametrize("quantization", [q for q in QUANTIZATIONS if q != "int8"])
def test_the_default_preset_exports_in_every_quantization(quantization, tmp_path, capsys):
    model, loaded, photos, captions, edge = _export_and_caption(DEFAULT_PRESET, quantization, tmp_path / quantization)
    if quantization == "fp32":  # the float pair captions as the library does, token for token
        settings = loaded.decoding
        library = generate_captions(
            model, images=np.stack(photos), sampler=BeamSampler(settings.beam_size), max_length=12,
            forbid_unknown=settings.forbid_unknown, no_repeat_ngram_size=settings.no_repeat_ngram_size,
            no_repeat_content_words=settings.no_repeat_content_words,
        )  # fmt: skip
        assert [c.text for c in captions] == library.best_texts
        # the encoder file carries the checkpoint's ImageNet classifier: the library's tags, on every runtime
        from sat_tf.models.imagenet_tagger import shared_tagger

        tagger = shared_tagger(model.encoder.backbone_name)
        pixels = np.stack(photos).astype(np.float32)
        on_device = np.concatenate([edge.encode_image(p[np.newaxis])["class_probabilities"] for p in pixels])
        np.testing.assert_allclose(on_device, tagger.probabilities(pixels), atol=1e-4)
        for caption, tags in zip(captions, tagger.tags(pixels)):
            assert [t.word for t in caption.tags] == [t.word for t in tags]
        # sat-tf-edge prints what sat-tf caption prints: the caption, its confidence, and for a
        # caption the model is not sure of, what the photo may show
        _prints_as_the_caption_command(photos, tmp_path, capsys)


def _prints_as_the_caption_command(photos, tmp_path, capsys) -> None:
    from PIL import Image

    from sat_tf.cli import main
    from sat_tf_edge.cli import main as edge_main

    paths = []
    for index, photo in enumerate(photos):
        paths.append(str(tmp_path / f"photo_{index}.png"))
        Image.fromarray(photo).save(paths[-1])
    capsys.readouterr()
    assert main(["caption", *paths, "--no-progress"]) == 0
    library = [line for line in capsys.readouterr().out.splitlines() if "\t" in line]
    assert edge_main([str(tmp_path / "fp32"), *paths]) == 0
    assert capsys.readouterr().out.splitlines() == library
