"""Test set-up. Two logical CPU devices must be configured before TensorFlow initialises, so that
MirroredStrategy can be tested on a one-CPU machine; this file is imported before any test."""

import itertools
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The kernels sat_tf's commands use (sat_tf/__init__.py), pinned before TensorFlow loads, so the exactness
# tests (bit-identical resume, 2-worker equality) check the numerics users get on every CPU.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
# `sat-tf caption` takes the TensorFlow path in tests (it would otherwise build a shipped preset's TFLite
# pair in the user's cache and take the fast path on later calls); tests/test_fast_caption.py turns it on.
os.environ["SAT_TF_NO_FAST_PATH"] = "1"

import numpy as np  # noqa: E402
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


def tiny_data_set():
    """32 px synthetic images (4x4 region grid) with their captions and tokenizer."""
    data = synthetic.generate(48, seed=3, image_size=32, grid_size=4)
    tokenizer = CaptionTokenizer.from_corpus(r.caption for r in data.records)
    return data, tokenizer, encode_captions(data.records, tokenizer)


@pytest.fixture(scope="session")
def tiny_data():
    """`tiny_data_set()`, made once a session."""
    return tiny_data_set()


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


def fixed_batch(tiny_data, size=8, start=0):
    """Records start..start+size as a batch, padded to their longest caption."""
    data, _, captions = tiny_data
    rows = slice(start, start + size)
    tokens = captions.tokens[rows]
    tokens = tokens[:, : int(captions.lengths[rows].max())]
    return {"images": tf.constant(data.images[captions.image_index[rows]]), "tokens": tf.constant(tokens)}


def weights_of(model):
    return [w.numpy() for w in model.weights]


def greedy_margins(model, images, max_length: int = 12, no_repeat_ngram_size: int = 0, forbid_unknown=False):
    """[N]: for each image, the smallest gap between the best and the second-best next-word
    log-prob along its greedy caption (up to `<end>`), among the words the decoding settings allow
    (`<unk>` forbidden, no repeated n-gram: the edge runtime's rule). A small gap is a near-tie,
    which a kernel's rounding (oneDNN, AMX, XLA, a TFLite copy) may break either way."""
    from sat_tf_edge.runtime import repeated_ngram_words

    decoder = model.decoder
    features = model.encoder(tf.constant(images), training=False)
    constants, state = decoder.step_constants(features), decoder.initial_state(features)
    previous = np.full(len(images), model.tokenizer.start_id, np.int32)
    margins = np.full(len(images), np.inf)
    finished = np.zeros(len(images), bool)
    emitted: list[list[int]] = [[] for _ in images]
    for _ in range(max_length):
        out = decoder.step(constants, state, tf.constant(previous))
        log_probs = out.log_probs.numpy().astype(np.float64)
        if forbid_unknown:
            log_probs[:, model.tokenizer.unk_id] = -np.inf
        for row, tokens in enumerate(emitted):
            log_probs[row, repeated_ngram_words(tokens, no_repeat_ngram_size)] = -np.inf
        top2 = np.sort(log_probs, axis=1)[:, -2:]
        margins = np.where(finished, margins, np.minimum(margins, top2[:, 1] - top2[:, 0]))
        previous = log_probs.argmax(axis=1).astype(np.int32)
        for row in np.flatnonzero(~finished):
            emitted[row].append(int(previous[row]))
        finished |= previous == model.tokenizer.end_id
        state = out.state
        if finished.all():
            break
    return margins


# What the trained fixture guarantees, checked after training instead of hoped for: the exported
# copies of it are held to the library's captions, which only means something when the captions
# differ between photos and no greedy step is a near-tie.
FIXTURE_PROBE_IMAGES = 16  # the photos tests caption with it: tiny_data's first 16
FIXTURE_DISTINCT_CAPTIONS = 3
FIXTURE_MARGIN = 0.05  # log-prob gap; the float32 copies agree to 1e-4
FIXTURE_MAX_STEPS = 600


def train_tiny_captioner(tiny_data, seed: int = 0, check_every: int = 20):
    """The tiny captioner trained until its captions of the probe photos differ and none of their
    greedy steps is a near-tie; a clear failure after FIXTURE_MAX_STEPS steps.

    Group normalisation, not batch: batch norm decodes with moving statistics that lag the
    weights by the last ~100 steps, so what a short run decodes depended on where the CPU's
    kernels took the trajectory (on Intel AMX the captions of all six probe photos were equal).
    Returns (model, steps taken)."""
    import keras

    from sat_tf.inference import generate_captions
    from sat_tf.training import TrainConfig, build_train_step

    model = make_tiny_model(tiny_data[1], dropout=0.0, seed=seed, normalization="group")
    optimizer = keras.optimizers.Adam(1e-2)
    optimizer.build(model.trainable_variables)
    step = build_train_step(model, optimizer, tf.distribute.get_strategy(), TrainConfig(clip_norm=5.0))
    batches = [fixed_batch(tiny_data, size=16, start=start) for start in range(0, 48, 16)]
    probe = tiny_data[0].images[:FIXTURE_PROBE_IMAGES]
    distinct, margin = 0, 0.0
    for steps in range(1, FIXTURE_MAX_STEPS + 1):
        step(batches[(steps - 1) % len(batches)])
        if steps % check_every == 0:
            distinct = len(set(generate_captions(model, images=probe, max_length=12).best().texts))
            # decisive as the library decodes, and as the XLA export does (no repeated bigram, no <unk>)
            margin = min(
                float(greedy_margins(model, probe).min()),
                float(greedy_margins(model, probe, no_repeat_ngram_size=2, forbid_unknown=True).min()),
            )
            if distinct >= FIXTURE_DISTINCT_CAPTIONS and margin >= FIXTURE_MARGIN:
                return model, steps
    raise AssertionError(
        f"the tiny captioner did not learn its probe photos in {FIXTURE_MAX_STEPS} steps (seed {seed}): "
        f"{distinct} distinct captions of {FIXTURE_PROBE_IMAGES} (want >= {FIXTURE_DISTINCT_CAPTIONS}), "
        f"smallest greedy log-prob gap {margin:.4f} (want >= {FIXTURE_MARGIN})"
    )


@pytest.fixture(scope="session")
def trained_tiny_model(tiny_data):
    """The tiny captioner trained until it captions its probe photos differently and decisively
    (`train_tiny_captioner`), so exported copies can be held to identical captions on every CPU."""
    return train_tiny_captioner(tiny_data)[0]


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


@pytest.fixture(scope="module")
def repetitive_model():
    """A tiny model whose output layer prefers "x" and rarely ends: unblocked, it repeats itself."""
    import keras

    from sat_tf.data.tokenizer import CaptionTokenizer
    from sat_tf.models import AttentionDecoder, Captioner, Encoder

    keras.utils.set_random_seed(5)
    tokenizer = CaptionTokenizer(["x", "y", "z"])
    decoder = AttentionDecoder(tokenizer.vocabulary_size, embedding_dim=4, hidden_dim=6, attention_dim=3, dropout=0.0)
    model = Captioner(Encoder("small_cnn", image_size=8, small_cnn_filters=(2,)), decoder, tokenizer)
    bias = np.zeros(tokenizer.vocabulary_size, np.float32)
    bias[tokenizer.vocabulary.index("x")], bias[tokenizer.end_id] = 4.0, -4.0
    decoder.output_projection.bias.assign(bias)
    return model


def best_caption_by_exhaustive_search(model, features, max_length: int, allowed) -> tuple[float, list[int]]:
    """(log-prob, tokens) of the most probable caption of up to `max_length` tokens, `<end>` included
    (or cut at max_length), among those `allowed(tokens)` accepts: the reference beam search is held to."""
    vocabulary, end = model.tokenizer.vocabulary_size, model.tokenizer.end_id
    best = None
    for length in range(1, max_length + 1):
        for prefix in itertools.product([v for v in range(vocabulary) if v != end], repeat=length - 1):
            for ending in [[end]] + ([[w] for w in range(vocabulary) if w != end] if length == max_length else []):
                sequence = list(prefix) + ending
                if not allowed(sequence):
                    continue
                log_prob = sequence_log_prob(model, features, sequence)
                if best is None or log_prob > best[0]:
                    best = (log_prob, sequence)
    assert best is not None
    return best


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
