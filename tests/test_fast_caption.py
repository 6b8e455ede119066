"""`sat-tf caption`'s fast path: the default preset's float32 TFLite pair, built once into the
cache by the first (TensorFlow) run, captions later runs without TensorFlow and prints and writes
what the TensorFlow path does: the same lines (caption, confidence, "not sure" and what the photo
may show, k-best), the same records, an unreadable photo recorded. Requests that need TensorFlow
(tags, attention plots, decoding flags, other models) never take it."""

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from sat_tf.cli import DEFAULT_PRESET, main
from sat_tf.cli.fast_caption import fast_arguments
from sat_tf.data import synthetic


@pytest.mark.parametrize(
    "argv, fast",
    [
        (["caption", "a.jpg"], True),
        (["caption", "a.jpg", "--output", "o.jsonl", "--resume", "--k-best", "2", "--hide-not-sure"], True),
        (["caption", "a.jpg", "--model", "everyday_lite0_448"], True),
        (["caption", "a.jpg", "--tags"], False),  # the tagger's words printed: TensorFlow's
        (["caption", "a.jpg", "--attention-plot", "p.png"], False),
        (["caption", "a.jpg", "--beam-size", "5"], False),  # decoding flags: the library's loop
        (["caption", "a.jpg", "--model", "flickr8k_lite0"], False),  # captions guided by tags
        (["caption", "a.jpg", "--model", "runs/x"], False),
        (["caption", "a.jpg", "--model", "everyday_lite0_448", "flickr8k_lite0"], False),  # an ensemble
        (["evaluate", "--model", "everyday_lite0_448"], False),
    ],
)
def test_which_requests_take_the_fast_path(argv, fast, monkeypatch):
    monkeypatch.delenv("SAT_TF_NO_FAST_PATH")
    assert (fast_arguments(argv) is not None) == fast
    monkeypatch.setenv("SAT_TF_NO_FAST_PATH", "1")
    assert fast_arguments(argv) is None


def test_the_fast_path_prints_and_writes_what_the_tensorflow_path_does(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    images = synthetic.generate(3, seed=4, image_size=300).images
    for index, image in enumerate(images):
        Image.fromarray(image).save(folder / f"{index}.jpg", quality=92)
    (folder / "broken.jpg").write_bytes(b"not a photo")
    monkeypatch.setenv("SAT_TF_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("SAT_TF_NO_FAST_PATH")
    argv = ["caption", str(folder), "--k-best", "2", "--no-progress"]

    # the first run is TensorFlow's, and leaves the pair in the cache
    assert main([*argv, "--output", str(tmp_path / "tf.json")]) == 0
    printed_tf = capsys.readouterr()
    assert "preparing the fast path" in printed_tf.err
    assert len(list((tmp_path / "cache" / "edge").glob(f"{DEFAULT_PRESET}-*/sat_tf_edge.json"))) == 1

    # the next runs are the fast path's: the same lines and records, and no TensorFlow started
    code = (
        "import sys; from sat_tf.cli import main; code = main(sys.argv[1:]); "
        "assert 'tensorflow' not in sys.modules, 'TensorFlow was imported'; sys.exit(code)"
    )
    fast = subprocess.run(
        [sys.executable, "-c", code, *argv, "--output", str(tmp_path / "fast.json")],
        capture_output=True,
        text=True,
    )
    assert fast.returncode == 0, fast.stderr
    assert "preparing" not in fast.stderr
    lines = lambda out: [line for line in out.splitlines() if line.strip()]  # noqa: E731
    assert lines(fast.stdout) == lines(printed_tf.out)
    library, edge = (json.loads((tmp_path / name).read_text()) for name in ("tf.json", "fast.json"))
    assert len(library["skipped"]) == len(edge["skipped"]) == 1
    assert [r["image"] for r in edge["captions"]] == [r["image"] for r in library["captions"]]
    for ours, theirs in zip(edge["captions"], library["captions"]):
        assert {k: v for k, v in ours.items() if k not in ("confidence", "log_prob", "tags")} == {
            k: v for k, v in theirs.items() if k not in ("confidence", "log_prob", "tags")
        }
        assert ours["confidence"] == pytest.approx(theirs["confidence"], abs=1e-3)
        assert ours["log_prob"] == pytest.approx(theirs["log_prob"], abs=1e-3)
        assert [t["word"] for t in ours["tags"]] == [t["word"] for t in theirs["tags"]]
        probabilities = [[t["probability"] for t in r["tags"]] for r in (ours, theirs)]
        assert np.allclose(*probabilities, atol=1e-3)
    assert any(r["not_sure"] and r["tags"] for r in library["captions"])  # "it may show" was compared


def test_many_photos_take_the_tensorflow_path(tmp_path, monkeypatch):
    """Past FAST_PATH_MOST_PHOTOS photos the fast path hands the request back (None): TensorFlow's
    batched decoding is faster there."""
    from sat_tf.cli import fast_caption

    folder = tmp_path / "photos"
    folder.mkdir()
    for index in range(3):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(folder / f"{index}.png")
    monkeypatch.setattr(fast_caption, "FAST_PATH_MOST_PHOTOS", 2)
    monkeypatch.delenv("SAT_TF_NO_FAST_PATH")
    args = fast_arguments(["caption", str(folder), "--output", str(tmp_path / "x.jsonl")])
    assert args is not None
    assert fast_caption.run(args, tmp_path / "no_pair_needed") is None
    assert not (tmp_path / "x.jsonl").exists()  # nothing started, nothing written
