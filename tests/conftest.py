"""Test set-up. Two logical CPU devices must be configured before TensorFlow initialises, so that
MirroredStrategy can be tested on a one-CPU machine; this file is imported before any test."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The kernels sat_tf's commands use (sat_tf/__init__.py), pinned before TensorFlow loads, so the exactness
# tests (bit-identical resume, 2-worker equality) check the numerics users get on every CPU.
os.environ["TF_ENABLE_ONEDNN_OPTS"] = "1"

import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _cpus[0], [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
)
tf.config.experimental.enable_op_determinism()

from sat_tf.data import synthetic  # noqa: E402
from sat_tf.data.pipeline import encode_captions  # noqa: E402
from sat_tf.data.tokenizer import CaptionTokenizer  # noqa: E402
from sat_tf.models.config import ModelConfig, build_captioner  # noqa: E402


@pytest.fixture(scope="session")
def tiny_data():
    """32 px synthetic images (4x4 region grid) with their captions and tokenizer."""
    data = synthetic.generate(48, seed=3, image_size=32, grid_size=4)
    tokenizer = CaptionTokenizer.from_corpus(r.caption for r in data.records)
    return data, tokenizer, encode_captions(data.records, tokenizer)


def make_tiny_model(
    tokenizer, penalty_weight=0.01, dropout=0.0, seed=0, normalization="batch", attention_mode="soft", **decoder_kwargs
):
    import keras

    keras.utils.set_random_seed(seed)
    config = ModelConfig(
        image_size=32,
        cnn_filters=(4, 8, 8),
        append_coordinates=True,
        cnn_normalization=normalization,
        embedding_dim=8,
        hidden_dim=16,
        attention_dim=8,
        dropout=dropout,
        attention=attention_mode,
        penalty_weight=penalty_weight,
    )
    model = build_captioner(config, tokenizer)
    for name, value in decoder_kwargs.items():  # decoder settings ModelConfig does not carry
        setattr(model.decoder, name, value)
    return model


@pytest.fixture
def tiny_model(tiny_data):
    return make_tiny_model(tiny_data[1])


def fixed_batch(tiny_data, size=8):
    """The first `size` records as a batch, padded to their longest caption."""
    data, _, captions = tiny_data
    tokens = captions.tokens[:size]
    tokens = tokens[:, : int(captions.lengths[:size].max())]
    return {"images": tf.constant(data.images[captions.image_index[:size]]), "tokens": tf.constant(tokens)}


def weights_of(model):
    return [w.numpy() for w in model.weights]


@pytest.fixture(scope="session")
def trained_tiny_model(tiny_data):
    """The tiny captioner after 60 steps on its data: confident enough that decoding is not a
    string of near-ties, so exported copies can be held to identical captions."""
    import keras

    from sat_tf.training import TrainConfig, build_train_step

    model = make_tiny_model(tiny_data[1], dropout=0.0)
    optimizer = keras.optimizers.Adam(1e-2)
    optimizer.build(model.trainable_variables)
    step = build_train_step(model, optimizer, tf.distribute.get_strategy(), TrainConfig(clip_norm=5.0))
    batches = [fixed_batch(tiny_data, size=16)]
    data, _, captions = tiny_data
    for start in range(16, 48, 16):
        tokens = captions.tokens[start : start + 16]
        tokens = tokens[:, : int(captions.lengths[start : start + 16].max())]
        batches.append(
            {
                "images": tf.constant(data.images[captions.image_index[start : start + 16]]),
                "tokens": tf.constant(tokens),
            }
        )
    for i in range(60):
        step(batches[i % len(batches)])
    return model


def pytest_terminal_summary(terminalreporter):
    """Reports how many generated inputs the fuzz tests ran (tests/test_fuzz.py)."""
    fuzz = __import__("sys").modules.get("test_fuzz")
    if fuzz is not None and fuzz.FUZZ_CASES:
        total = sum(fuzz.FUZZ_CASES.values())
        details = ", ".join(f"{name} {count}" for name, count in fuzz.FUZZ_CASES.items())
        terminalreporter.write_line(f"fuzz cases run: {total} ({details}), unhandled failures: 0 unless reported above")


@pytest.fixture(scope="module")
def random_model():
    """A tiny random captioner (6 tokens) for decoding tests against exhaustive search."""
    import keras

    from sat_tf.data.tokenizer import CaptionTokenizer
    from sat_tf.models import AttentionDecoder, Captioner, Encoder

    keras.utils.set_random_seed(3)
    tokenizer = CaptionTokenizer(["x", "y"])  # 6 tokens with the specials
    decoder = AttentionDecoder(tokenizer.vocabulary_size, embedding_dim=4, hidden_dim=6, attention_dim=3, dropout=0.0)
    model = Captioner(Encoder("small_cnn", image_size=8, small_cnn_filters=(2,)), decoder, tokenizer)
    for weight in decoder.trainable_weights:  # sharpen the distributions so rankings are clear
        weight.assign(weight.numpy() * 3.0)
    return model


def sequence_log_prob(model, features, sequence):
    decoder = model.decoder
    constants, state = decoder.step_constants(features), decoder.initial_state(features)
    previous, total = tf.constant([model.tokenizer.start_id]), 0.0
    for token in sequence:
        out = decoder.step(constants, state, previous)
        total += float(out.log_probs[0, token])
        state, previous = out.state, tf.constant([token])
    return total


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium driven by selenium (Debian's `chromium` and `chromium-driver`; the README's
    set-up and `.ci/run` install them); the tests that use it skip, saying why, without them."""
    import shutil

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    chromedriver = shutil.which("chromedriver")
    if not (chromium and chromedriver):
        pytest.skip("no Chromium here: `apt-get install -y chromium chromium-driver` (Debian) runs this test")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is in the [test] extra")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=chromedriver), options=options)
    driver.set_script_timeout(180)
    yield driver
    driver.quit()
