"""Several caption sources at once: COCO split lists, text-only captions, mixing weights per epoch,
the decoder's "no photo" annotation, and a vocabulary that grows over a trained model's."""

import json
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import sat_tf.training.trainer as trainer_module
from sat_tf.cli import main
from sat_tf.data.pipeline import encode_captions, make_caption_dataset
from sat_tf.data.readers import CaptionFileError, read_captions, read_text_captions
from sat_tf.data.records import NO_PHOTO
from sat_tf.data.sources import CaptionSource, DataConfig, load_captions
from sat_tf.data.tokenizer import CaptionTokenizer
from sat_tf.errors import ConfigError
from sat_tf.models.config import ModelConfig, build_captioner
from sat_tf.training import TrainConfig, TrainingData, train
from sat_tf.training.task import CaptioningTask
from sat_tf.workflows.models import ModelLoadError, initialize_from, load_captioner
from sat_tf.workflows.run_config import RunConfig

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
COCO_2014 = SHARED / "coco_val2014"


def _coco_json(path: Path, names: list[str]) -> None:
    images = [{"id": 10 + k, "file_name": name} for k, name in enumerate(names)]
    annotations = [
        {"id": k, "image_id": 10 + k // 2, "caption": f"photo {k // 2} caption {k % 2}"} for k in range(2 * len(names))
    ]
    path.write_text(json.dumps({"images": images, "annotations": annotations}))


def test_a_split_list_limits_coco_captions_json(tmp_path):
    _coco_json(tmp_path / "captions.json", ["a.jpg", "b.jpg", "c.jpg"])
    (tmp_path / "train.txt").write_text("a.jpg\nc.jpg\n")
    records = read_captions(tmp_path / "captions.json", tmp_path, split_list=tmp_path / "train.txt")
    assert [(r.image_id, r.caption) for r in records] == [
        ("a.jpg", "photo 0 caption 0"),
        ("a.jpg", "photo 0 caption 1"),
        ("c.jpg", "photo 2 caption 0"),
        ("c.jpg", "photo 2 caption 1"),
    ]
    (tmp_path / "other.txt").write_text("a.jpg\nz.jpg\n")
    with pytest.raises(CaptionFileError, match=r"other.txt: 1 image\(s\) have no caption .*z.jpg"):
        read_captions(tmp_path / "captions.json", tmp_path, split_list=tmp_path / "other.txt")


@pytest.mark.skipif(not COCO_2014.is_dir(), reason=f"{COCO_2014} is not here (the shared real-data folder)")
def test_coco_json_and_token_file_give_the_same_split():
    for split, count in (("train_images.txt", 750), ("dev_images.txt", 100)):
        from_json = read_captions(COCO_2014 / "captions_val2014.json", COCO_2014 / "images", COCO_2014 / split)
        from_tokens = read_captions(COCO_2014 / "coco_val2014.token.txt", COCO_2014 / "images", COCO_2014 / split)
        assert len({r.image_id for r in from_json}) == count
        assert sorted((r.image_id, r.caption) for r in from_json) == sorted(
            (r.image_id, r.caption) for r in from_tokens
        )


def test_text_only_captions_from_jsonl_and_txt(tmp_path):
    (tmp_path / "text.jsonl").write_text('{"coco_id": 1, "caption": "A giraffe eats."}\n\n{"caption": "A zebra."}\n')
    records = read_text_captions(tmp_path / "text.jsonl")
    assert [r.caption for r in records] == ["A giraffe eats.", "A zebra."]
    assert all(r.image_path is None for r in records) and records[1].where().endswith("text.jsonl:3")
    (tmp_path / "text.txt").write_text("one caption\nanother caption\n")
    assert [r.caption for r in read_text_captions(tmp_path / "text.txt")] == ["one caption", "another caption"]
    (tmp_path / "bad.jsonl").write_text('{"caption": "fine"}\n{"coco_id": 3}\n')
    with pytest.raises(CaptionFileError, match="bad.jsonl:2: needs a string field 'caption'"):
        read_text_captions(tmp_path / "bad.jsonl")
    with pytest.raises(CaptionFileError, match="unsupported"):
        read_text_captions(tmp_path / "captions.csv")


@pytest.mark.parametrize(
    "entry, message",
    [
        ({"captions": "t.jsonl", "wieght": 2}, r"data.mix\[0\]: unknown key\(s\) wieght"),
        ({"captions": "t.jsonl", "weight": 0}, r"data.mix\[0\].weight: expected a positive number"),
        ({"captions": "t.jsonl", "text_only": "yes"}, r"data.mix\[0\].text_only: expected true or false"),
        ({"weight": 1}, r"data.mix\[0\].captions: a caption file path is required"),
    ],
)
def test_a_bad_mix_entry_is_named(entry, message):
    with pytest.raises(ConfigError, match=message):
        RunConfig.from_dict({"data": {"captions": "c.txt", "mix": [entry]}})


def test_mix_round_trips_through_the_run_config(tmp_path):
    mix = [{"captions": "coco.txt", "image_dir": "images", "weight": 4}, {"captions": "t.jsonl", "text_only": True}]
    config = RunConfig.from_dict({"data": {"captions": "c.txt", "weight": 0.5, "mix": mix}})
    config.save(tmp_path / "run.json")
    again = RunConfig.from_dict(json.loads((tmp_path / "run.json").read_text()))
    assert again.data.sources() == [
        CaptionSource("coco.txt", image_dir="images", weight=4.0),
        CaptionSource("t.jsonl", text_only=True),
    ]
    assert again.data.weight == 0.5


def _mixed_folder(root: Path) -> DataConfig:
    """Two paired sources (a Flickr token file and a COCO JSON with a split list) and a text file."""
    rng = np.random.default_rng(0)
    for name in ("f1.jpg", "f2.jpg", "c1.jpg", "c2.jpg", "c3.jpg"):
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(root / name)
    (root / "tokens.txt").write_text("f1.jpg#0\ta dog runs\nf2.jpg#0\ta man sits\n")
    _coco_json(root / "coco.json", ["c1.jpg", "c2.jpg", "c3.jpg"])
    (root / "coco_train.txt").write_text("c1.jpg\nc3.jpg\n")
    (root / "text.jsonl").write_text(
        "".join(json.dumps({"caption": f"a giraffe number {k}"}) + "\n" for k in range(10))
    )
    return DataConfig(
        captions="tokens.txt",
        image_dir=".",
        data_root=str(root),
        mix=(
            {"captions": "coco.json", "image_dir": ".", "split_list": "coco_train.txt", "weight": 2},
            {"captions": "text.jsonl", "text_only": True, "weight": 0.3},
        ),
    )


def test_load_captions_joins_every_source(tmp_path):
    data = load_captions(_mixed_folder(tmp_path), 32, verbose=False)
    assert [Path(p).name for p in data.image_paths] == ["f1.jpg", "f2.jpg", "c1.jpg", "c3.jpg"]
    assert data.record_source == [0, 0, 1, 1, 1, 1] + [2] * 10
    assert data.image_index == [0, 1, 2, 2, 3, 3] + [NO_PHOTO] * 10
    assert data.source_weights == (1.0, 2.0, 0.3)
    assert sorted(len(v) for v in data.references().values()) == [1, 1, 2, 2]  # text captions are nobody's reference
    assert len(data.with_photos_only().records) == 6


def test_an_epoch_mixes_sources_by_weight_and_resumes_identically(tmp_path):
    data = load_captions(_mixed_folder(tmp_path), 32, verbose=False)
    tokenizer = CaptionTokenizer.from_corpus(r.caption for r in data.records)
    captions = encode_captions(
        data.records, tokenizer, data.image_index, record_source=data.record_source, source_weights=data.source_weights
    )
    epochs = [captions.for_epoch(seed=0, epoch=e) for e in range(6)]
    for epoch in epochs:  # 2 paired Flickr captions once, 4 COCO captions twice, 3 of 10 text captions
        assert np.bincount(epoch.source, minlength=3).tolist() == [2, 8, 3]
        coco_rows = epoch.tokens[epoch.source == 1]
        assert all((coco_rows == row).all(axis=1).sum() == 2 for row in coco_rows)
    text_sets = {tuple(sorted(map(tuple, e.tokens[e.source == 2]))) for e in epochs}
    assert len(text_sets) > 1  # a different share of the text each epoch
    again = captions.for_epoch(seed=0, epoch=3)
    assert (again.tokens == epochs[3].tokens).all() and (again.image_index == epochs[3].image_index).all()

    images = np.zeros((4, 8, 8, 3), np.uint8) + np.arange(4, dtype=np.uint8)[:, None, None, None]
    batches = list(
        make_caption_dataset(images, captions, 4, shuffle=True, bucket_by_length=False, drop_remainder=False)
    )
    seen = np.concatenate([b["image_index"].numpy() for b in batches])
    assert len(seen) == 13 and (seen == NO_PHOTO).sum() == 3
    for batch in batches:
        has_photo = batch["has_photo"].numpy()
        assert (has_photo == (batch["image_index"].numpy() != NO_PHOTO)).all()
        photo_rows = batch["images"].numpy()[has_photo][:, 0, 0, 0]
        assert (photo_rows == batch["image_index"].numpy()[has_photo]).all()


def _tiny(tokenizer, text_only_context=True, seed=0):
    keras.utils.set_random_seed(seed)
    config = ModelConfig(
        image_size=32,
        cnn_filters=(4, 8, 8),
        embedding_dim=8,
        hidden_dim=16,
        attention_dim=8,
        dropout=0.0,
        text_only_context=text_only_context,
    )
    return build_captioner(config, tokenizer)


def test_a_caption_without_photo_attends_to_the_no_photo_annotation(tiny_data):
    _, tokenizer, captions = tiny_data
    model = _tiny(tokenizer)
    blank = np.random.default_rng(1).normal(size=model.decoder.no_photo_annotation.shape).astype(np.float32)
    model.decoder.no_photo_annotation.assign(blank)
    features = tf.random.normal([3, 16, blank.shape[0]])
    mixed = model.decoder.without_photos(features, tf.constant([True, False, True]))
    np.testing.assert_array_equal(mixed.numpy()[[0, 2]], features.numpy()[[0, 2]])
    np.testing.assert_array_equal(mixed.numpy()[1], np.tile(blank, (16, 1)))
    tokens = tf.constant(captions.tokens[:3, :6])
    outputs = model.decoder(mixed, tokens)
    np.testing.assert_allclose(outputs["alphas"].numpy()[1], 1 / 16, rtol=1e-6)  # identical regions: uniform


def test_text_only_captions_train_language_not_attention(tiny_data):
    """Attention over identical regions is uniform whatever its scores, so a batch of captions
    without photos gives the attention MLP and the encoder no gradient, and the rest of the decoder one."""
    data, tokenizer, captions = tiny_data
    model = _tiny(tokenizer)
    task = CaptioningTask(model)
    batch = {
        "images": tf.constant(data.images[captions.image_index[:4]]),
        "tokens": tf.constant(captions.tokens[:4]),
        "has_photo": tf.constant([False] * 4),
    }
    with tf.GradientTape() as tape:
        loss, _ = task.compute_caption_loss(batch, training=True)
    variables = model.trainable_variables
    gradients = {
        v.path: None if g is None else tf.convert_to_tensor(g).numpy()
        for v, g in zip(variables, tape.gradient(loss, variables))
    }
    attention = [p for p in gradients if "/attention/" in p and "score" not in p]
    assert attention and all(gradients[p] is None or np.abs(gradients[p]).max() < 1e-7 for p in attention)
    encoder = [gradients[v.path] for v in model.encoder.trainable_variables]
    assert encoder and all(g is None or np.abs(g).max() == 0 for g in encoder)
    for name in ("no_photo_annotation", "embedding", "lstm_word_kernel", "output_projection"):
        assert any(name in p and gradients[p] is not None and np.abs(gradients[p]).max() > 0 for p in gradients)


def test_a_decoder_without_no_photo_annotation_refuses_text_only_batches(tiny_data):
    model = _tiny(tiny_data[1], text_only_context=False)
    with pytest.raises(ValueError, match="text_only_context"):
        model.decoder.without_photos(tf.zeros([1, 16, 11]), tf.constant([False]))


def test_the_no_photo_annotation_is_saved_with_the_model(tiny_data, tmp_path):
    model = _tiny(tiny_data[1])
    model.decoder.no_photo_annotation.assign(np.arange(model.decoder.no_photo_annotation.shape[0], dtype=np.float32))
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert loaded.decoder.get_config()["text_only_context"] is True
    np.testing.assert_array_equal(loaded.decoder.no_photo_annotation.numpy(), model.decoder.no_photo_annotation.numpy())


def test_a_grown_vocabulary_starts_from_the_known_words_rows(tiny_data):
    _, old_tokenizer, _ = tiny_data
    old = _tiny(old_tokenizer, text_only_context=False, seed=1)
    new_words = ["giraffe", "zebra"]
    kept = old_tokenizer.vocabulary[4:][::-1][:-1]  # another order, one word dropped
    tokenizer = CaptionTokenizer(vocabulary=[*old_tokenizer.vocabulary[:4], *kept, *new_words])
    fresh = _tiny(tokenizer, seed=2)
    before = {w.path: w.numpy() for w in fresh.weights}
    model = initialize_from(_tiny(tokenizer, seed=2), old, "old.keras")
    embedding, kernel, bias = (
        model.decoder.embedding.embeddings.numpy(),
        model.decoder.output_projection.kernel.numpy(),
        model.decoder.output_projection.bias.numpy(),
    )
    old_row = {w: k for k, w in enumerate(old_tokenizer.vocabulary)}
    for row, word in enumerate(tokenizer.vocabulary):
        if word in old_row:
            np.testing.assert_array_equal(embedding[row], old.decoder.embedding.embeddings.numpy()[old_row[word]])
            np.testing.assert_array_equal(
                kernel[:, row], old.decoder.output_projection.kernel.numpy()[:, old_row[word]]
            )
            assert bias[row] == old.decoder.output_projection.bias.numpy()[old_row[word]]
        else:
            np.testing.assert_array_equal(embedding[row], before[fresh.decoder.embedding.embeddings.path][row])
    np.testing.assert_array_equal(
        model.decoder.lstm_context_kernel.numpy(), old.decoder.lstm_context_kernel.numpy()
    )  # the rest is copied whole
    np.testing.assert_array_equal(
        model.decoder.no_photo_annotation.numpy(), before[fresh.decoder.no_photo_annotation.path]
    )  # the old model had none: kept fresh
    other_sizes = build_captioner(
        ModelConfig(image_size=32, cnn_filters=(4, 8, 8), embedding_dim=8, hidden_dim=24, attention_dim=8), tokenizer
    )
    with pytest.raises(ModelLoadError, match="old.keras: weight .* has shape"):
        initialize_from(other_sizes, old, "old.keras")


def _train_mixed(data, captions, tokenizer, output_dir, resume=False):
    config = TrainConfig(batch_size=4, epochs=3, learning_rate=3e-3, schedule="cosine", checkpoint_every=3, seed=4)

    def build():
        keras.utils.set_random_seed(2)
        model_config = ModelConfig(
            image_size=32,
            cnn_filters=(4, 8, 8),
            cnn_normalization="group",
            embedding_dim=8,
            hidden_dim=16,
            attention_dim=8,
            text_only_context=True,
        )
        return build_captioner(model_config, tokenizer)

    return train(build, TrainingData(data.image_paths, captions, 32), config, output_dir, resume=resume, verbose=False)


def test_mixed_training_resumes_exactly_and_learns_the_no_photo_annotation(tmp_path, monkeypatch):
    """Each epoch draws its share of the text anew; a run killed mid-epoch and resumed must see the
    same captions and end with the same weights as one that never stopped."""
    data = load_captions(_mixed_folder(tmp_path), 32, verbose=False)
    tokenizer = CaptionTokenizer.from_corpus(r.caption for r in data.records)
    captions = encode_captions(
        data.records, tokenizer, data.image_index, record_source=data.record_source, source_weights=data.source_weights
    )
    reference = _train_mixed(data, captions, tokenizer, tmp_path / "reference")
    assert reference.steps == 9  # 13 captions an epoch (2 + 2 x 4 + 3 of 10) in batches of 4, 3 epochs
    assert np.abs(reference.model.decoder.no_photo_annotation.numpy()).max() > 0  # it learned from text

    real_builder = trainer_module.build_train_step

    def interrupted_builder(*args, **kwargs):
        step, calls = real_builder(*args, **kwargs), []

        def step_then_crash(batch):
            calls.append(1)
            if len(calls) == 5:  # checkpoint at step 3; steps 4 and 5 (epoch 2) are replayed
                raise KeyboardInterrupt("simulated kill")
            return step(batch)

        return step_then_crash

    monkeypatch.setattr(trainer_module, "build_train_step", interrupted_builder)
    with pytest.raises(KeyboardInterrupt):
        _train_mixed(data, captions, tokenizer, tmp_path / "resumed")
    monkeypatch.setattr(trainer_module, "build_train_step", real_builder)
    resumed = _train_mixed(data, captions, tokenizer, tmp_path / "resumed", resume=True)
    assert resumed.steps == reference.steps
    for mine, theirs in zip(resumed.model.weights, reference.model.weights):
        np.testing.assert_allclose(mine.numpy(), theirs.numpy(), rtol=1e-6, atol=1e-7, err_msg=mine.path)


def test_sat_tf_train_mixes_sources_from_the_command_line(tmp_path):
    _mixed_folder(tmp_path)
    mix = [
        {"captions": "coco.json", "image_dir": ".", "split_list": "coco_train.txt", "weight": 2},
        {"captions": "text.jsonl", "text_only": True, "weight": 0.5},
    ]
    common = ["train", "--captions", "tokens.txt", "--image-dir", ".", "--data-root", str(tmp_path)]
    small = ["--image-size", "32", "--embedding-dim", "8", "--hidden-dim", "16", "--attention-dim", "8"]
    small += ["--epochs", "1", "--batch-size", "4", "--min-word-count", "1"]
    run = tmp_path / "run"
    assert main([*common, *small, "--mix", json.dumps(mix), "--text-only-context", "--output-dir", str(run)]) == 0
    resolved = json.loads((run / "run_config.json").read_text())
    assert resolved["data"]["mix"] == mix and resolved["model"]["text_only_context"] is True
    model = load_captioner(run)
    assert "giraffe" in model.tokenizer.vocabulary  # a word only the text-only source has
    assert main([*common, *small, "--mix", json.dumps(mix), "--output-dir", str(tmp_path / "refused")]) == 2
    with pytest.raises(SystemExit):
        main([*common, *small, "--mix", "not json", "--output-dir", str(tmp_path / "bad")])


def test_a_split_list_limits_jsonl_and_csv_captions(tmp_path):
    lines = [{"image": "photos/a.jpg", "caption": "one"}, {"image": "photos/b.jpg", "caption": "two"}]
    (tmp_path / "c.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    (tmp_path / "c.csv").write_text("image,caption\nphotos/a.jpg,one\nphotos/b.jpg,two\n")
    (tmp_path / "split.txt").write_text("b.jpg\n")
    for name in ("c.jsonl", "c.csv"):
        records = read_captions(tmp_path / name, tmp_path, split_list=tmp_path / "split.txt")
        assert [(r.image_id, r.caption) for r in records] == [("photos/b.jpg", "two")]
    (tmp_path / "absent.txt").write_text("b.jpg\nc.jpg\n")
    with pytest.raises(CaptionFileError, match=r"absent.txt: 1 image\(s\) have no caption in .*c.jsonl, e.g. c.jpg"):
        read_captions(tmp_path / "c.jsonl", tmp_path, split_list=tmp_path / "absent.txt")


def test_the_shipped_everyday_preset_names_novel_objects_with_words_of_its_own():
    """With COCO's words in the vocabulary, a zebra tag asks for "zebra" itself; the Flickr8k
    preset, which lacks the word, still borrows "horse" and renames it."""
    from sat_tf.inference.tag_guidance import tag_token_ids
    from sat_tf.models.imagenet_tagger import Tag
    from sat_tf.models.preset import preset_info

    zebra = Tag("zebra", 0.9, ("zebra",))
    for name, expected in (("everyday_lite0_448", "zebra"), ("flickr8k_lite0_448_distilled", "horse")):
        vocabulary = preset_info(name)["captioner"]["config"]["tokenizer"]["config"]["vocabulary"]
        index = {word: row for row, word in enumerate(vocabulary)}
        rows = tag_token_ids(zebra, index)
        assert list(rows) == [index[expected]]
        assert rows[index[expected]] == (None if expected == "zebra" else "zebra")
    everyday = preset_info("everyday_lite0_448")["captioner"]["config"]["tokenizer"]["config"]["vocabulary"]
    assert {"giraffe", "zebra", "pizza", "banana", "toilet", "laptop", "broccoli"} <= set(everyday)
