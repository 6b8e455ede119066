"""The encoder's ImageNet head as caption-word tags, and decoding guided by them."""

import numpy as np
import pytest
import tensorflow as tf

from sat_tf.data.coco_words import COCO_CATEGORIES, coco_category
from sat_tf.inference import BeamSampler, generate_captions
from sat_tf.inference.tag_guidance import (
    TagGuidance,
    caption_names,
    constraint_words,
)
from sat_tf.models.imagenet_tagger import (
    ImageNetTagger,
    Tag,
    imagenet_classes,
    tags_from_probabilities,
)


def _index(name: str) -> int:
    return next(i for i, c in enumerate(imagenet_classes()) if c.name.split(",")[0] == name)


def test_the_class_table_maps_imagenet_classes_to_caption_words():
    classes = imagenet_classes()
    assert len(classes) == 1000 and classes[0].synset == "n01440764"  # tench: the standard order
    assert len({c.synset for c in classes}) == 1000
    expected = {
        "Indian elephant": "elephant",
        "African elephant": "elephant",
        "trolleybus": "bus",
        "airliner": "airplane",
        "toilet seat": "toilet",
        "pizza": "pizza",
        "giant panda": "panda",
        "Labrador retriever": "dog",
        "golden retriever": "dog",
        "tabby": "cat",
        "school bus": "bus",
        "plate": "plate",
        "sports car": "car",
        "zebra": "zebra",
        "mountain bike": "bike",
    }
    assert {name: classes[_index(name)].word for name in expected} == expected


def test_tags_sum_the_classes_of_a_word_and_keep_the_probable_ones():
    probabilities = np.zeros([2, 1000], np.float32)
    probabilities[0, _index("Labrador retriever")] = 0.3
    probabilities[0, _index("golden retriever")] = 0.25  # dog: 0.55 in all
    probabilities[0, _index("tabby")] = 0.4
    probabilities[0, _index("pizza")] = 0.05  # below the threshold
    probabilities[1, _index("trolleybus")] = 0.9
    tags = tags_from_probabilities(probabilities, min_probability=0.1)
    assert [(t.word, round(t.probability, 6)) for t in tags[0]] == [("dog", 0.55), ("cat", 0.4)]
    assert tags[0][0].classes == ("Labrador retriever", "golden retriever")
    assert [(t.word, round(t.probability, 6)) for t in tags[1]] == [("bus", 0.9)]
    assert len(tags_from_probabilities(probabilities, min_probability=0.1, max_tags=1)[0]) == 1
    with pytest.raises(ValueError, match="1000"):
        tags_from_probabilities(np.zeros([1, 10]))


def test_the_tagger_reads_the_same_backbone_as_the_encoder():
    """Its network up to the head is EfficientNet-Lite0 with the ImageNet weights the captioner's
    encoder loads: same preprocessing, same features."""
    from sat_tf.models import Encoder

    tagger = ImageNetTagger()
    images = np.random.default_rng(0).uniform(0, 255, (2, 224, 224, 3)).astype(np.float32)
    probabilities = tagger.probabilities(images)
    assert probabilities.shape == (2, 1000)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    encoder = Encoder("efficientnet_lite0", weights="imagenet")
    head = tf.keras.Model(tagger.network.input, tagger.network.get_layer("head_activation").output)
    from sat_tf.models.efficientnet_lite import preprocess

    features = encoder(images).numpy()
    np.testing.assert_allclose(head(preprocess(images)).numpy().reshape(features.shape), features, rtol=1e-4, atol=1e-4)


def test_coco_words_name_categories():
    assert coco_category("puppy") == "dog" and coco_category("Man") == "person"
    assert coco_category("tv") == "tv" and coco_category("television") == "tv"
    assert coco_category("spaceship") is None
    assert all(coco_category(c) == c for c in COCO_CATEGORIES)


def test_constraint_words_hold_the_in_vocabulary_words_of_probable_tags_or_their_surrogates():
    vocabulary = {"<pad>": 0, "a": 1, "dog": 2, "hot": 3, "cat": 4, "horse": 5}
    tags = [
        [Tag("dog", 0.6, ()), Tag("cat", 0.2, ())],
        [Tag("hot dog", 0.5, ()), Tag("zebra", 0.9, ())],
        [Tag("spaceship", 0.9, ())],
        [],
    ]
    mask, renames = constraint_words(tags, vocabulary, min_probability=0.3)
    np.testing.assert_array_equal(mask, [[0, 0, 1, 0, 0, 0], [0, 0, 1, 1, 0, 1], [0] * 6, [0] * 6])
    assert renames == [{}, {"horse": "zebra"}, {}, {}]  # zebra is said with horse's token


def test_a_caption_names_a_tag_by_its_word_a_form_of_it_or_its_category():
    assert caption_names("two dogs play", "dog") and caption_names("a puppy runs", "dog")
    assert caption_names("a skier on a slope", "skis") and caption_names("a man biking", "bike")
    assert caption_names("a soccer player", "soccer ball") and caption_names("a jet in the sky", "airplane")
    assert not caption_names("a man on a rock", "elephant") and not caption_names("a cat", "dog")


def test_guided_text_renames_surrogates_and_fixes_articles():
    from sat_tf.inference.tag_guidance import guided_text

    assert guided_text("a horse stands near a elephant", {"horse": "zebra"}) == "a zebra stands near an elephant"


def test_auto_guidance_constrains_only_captions_that_miss_a_confident_tag(random_model):
    features = tf.constant(np.random.default_rng(7).normal(size=(4, 16, 2)) * 2.0, tf.float32)
    free = generate_captions(random_model, features=features, max_length=3, sampler=BeamSampler(3))
    free_words = [set(text.split()) for text in free.best_texts]
    # a confident tag per image: one the free caption already names where it can, else "x"/"y"
    tags = []
    for words in free_words:
        named = sorted(words & {"x", "y"})
        word = named[0] if named else "x"
        tags.append([Tag(word, 0.9, ())])
    missing = [i for i, words in enumerate(free_words) if tags[i][0].word not in words]
    settings = dict(sampler=BeamSampler(3), max_length=3, forbid_unknown=False)

    def guided_captions(tags, guidance):  # the decoding loop with tag guidance as one step
        captions = generate_captions(random_model, features=features, guidance=guidance, tags=tags, **settings)
        return captions, captions.guided.tolist()

    off, constrained_off = guided_captions(tags, TagGuidance("off"))
    assert off.best_texts == free.best_texts and not any(constrained_off)
    auto, constrained = guided_captions(tags, TagGuidance("auto"))
    assert constrained == [i in missing for i in range(4)]
    in_pairs = generate_captions(  # two batches of two: the flags and captions survive the joining
        random_model, features=features, guidance=TagGuidance("auto"), tags=tags, batch_size=2, **settings
    )
    assert in_pairs.guided.tolist() == constrained and in_pairs.texts == auto.texts
    for i in range(4):
        if i in missing:
            assert tags[i][0].word in auto.best_texts[i].split()
        else:
            assert auto.texts[i] == free.texts[i]
    low = [[Tag(t[0].word, 0.4, ())] for t in tags]  # below auto's 0.5: nothing changes
    assert guided_captions(low, TagGuidance("auto"))[0].texts == free.texts
    on, constrained_on = guided_captions(low, TagGuidance("on"))
    assert all(constrained_on) and all(t[0].word in text.split() for t, text in zip(low, on.best_texts))


def test_the_saved_model_returns_the_tags_the_library_computes(tmp_path):
    """An EfficientNet-Lite captioner exports its tagger: every signature returns tags and their
    probabilities, equal to `ImageNetTagger.tags` on the same pixels."""
    import io

    import keras
    from PIL import Image

    from sat_tf.data.tokenizer import CaptionTokenizer
    from sat_tf.export.saved_model import decode_image_bytes, export_saved_model
    from sat_tf.models import AttentionDecoder, Captioner, Encoder
    from sat_tf.models.imagenet_tagger import shared_tagger

    keras.utils.set_random_seed(0)
    tokenizer = CaptionTokenizer(["a", "dog"])
    model = Captioner(
        Encoder("efficientnet_lite0", weights="imagenet"),
        AttentionDecoder(tokenizer.vocabulary_size, 8, 8, 8, dropout=0.0),
        tokenizer,
    )
    rng = np.random.default_rng(1)
    photos = []
    for _ in range(2):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (240, 200, 3), dtype=np.uint8)).save(buffer, format="PNG")
        photos.append(buffer.getvalue())
    path = export_saved_model(model, tmp_path, "tagged", max_length=4, beam_size=2)
    served = tf.saved_model.load(str(path))
    data = tf.constant(photos)
    pixels = decode_image_bytes(data, 224).numpy()
    expected = shared_tagger("efficientnet_lite0").tags(pixels, min_probability=0.0, max_tags=3)
    for signature in ("serving_default", "beam_search"):
        outputs = served.signatures[signature](image_bytes=data)
        for row in range(2):
            assert [w.decode() for w in outputs["tags"][row].numpy()] == [t.word for t in expected[row]]
            np.testing.assert_allclose(
                outputs["tag_probabilities"][row], [t.probability for t in expected[row]], rtol=1e-4, atol=1e-6
            )
