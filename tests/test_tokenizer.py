import keras
import numpy as np
import pytest

from sat_tf.data.tokenizer import CaptionTokenizer, pad_token_ids


@pytest.fixture
def tokenizer():
    return CaptionTokenizer.from_corpus(["A red circle.", "a blue square", "A red, red triangle!"])


def test_vocabulary_is_ordered_by_frequency_after_special_tokens(tokenizer):
    assert tokenizer.vocabulary[:4] == ["<pad>", "<start>", "<end>", "<unk>"]
    # a: 3, red: 3 (ties alphabetical), then the words seen once, alphabetically
    assert tokenizer.vocabulary[4:] == ["a", "red", "blue", "circle", "square", "triangle"]


def test_lower_cases_strips_punctuation_and_maps_unknown_words(tokenizer):
    ids = tokenizer.tokenize(["A RED Square!!", "a purple circle"]).to_list()
    v = {w: i for i, w in enumerate(tokenizer.vocabulary)}
    assert ids[0] == [1, v["a"], v["red"], v["square"], 2]
    assert ids[1] == [1, v["a"], 3, v["circle"], 2]


def test_round_trip_gives_clean_sentence(tokenizer):
    sentences = ["a red circle", "a blue square", "a red triangle"]
    ids = pad_token_ids(tokenizer.tokenize(sentences))
    assert tokenizer.decode(ids) == sentences
    again = pad_token_ids(tokenizer.tokenize(tokenizer.decode(ids)))
    np.testing.assert_array_equal(ids, again)
    assert tokenizer.decode(tokenizer.tokenize(["  A red,circle. "])) == ["a red circle"]


def test_detokenize_stops_at_end_and_drops_padding(tokenizer):
    v = {w: i for i, w in enumerate(tokenizer.vocabulary)}
    ids = [[1, v["a"], v["red"], 2, v["blue"], 0], [v["square"], 0, 0, 0, 0, 0]]
    assert tokenizer.decode(ids) == ["a red", "square"]


def test_min_count_and_max_size():
    corpus = ["a a a b b c"]
    assert CaptionTokenizer.from_corpus(corpus, min_count=2).vocabulary[4:] == ["a", "b"]
    assert CaptionTokenizer.from_corpus(corpus, max_size=5).vocabulary[4:] == ["a"]
    with pytest.raises(ValueError, match="max_size"):
        CaptionTokenizer.from_corpus(corpus, max_size=4)


def test_vocabulary_file_and_keras_serialization_round_trip(tokenizer, tmp_path):
    tokenizer.save_vocabulary(tmp_path / "vocab.json")
    loaded = CaptionTokenizer.load_vocabulary(tmp_path / "vocab.json")
    assert loaded.vocabulary == tokenizer.vocabulary
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(tokenizer))
    assert clone.vocabulary == tokenizer.vocabulary
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="bad.json"):
        CaptionTokenizer.load_vocabulary(tmp_path / "bad.json")


def test_host_decode_agrees_with_in_graph_detokenize(tokenizer):
    ids = np.random.default_rng(0).integers(0, tokenizer.vocabulary_size, size=(50, 9))
    ids[::3, 4] = tokenizer.end_id  # some rows end early, others never
    expected = [s.decode("utf-8") for s in tokenizer.detokenize(ids).numpy()]
    assert tokenizer.decode(ids) == expected
    # the edge runtime's detokeniser is the same function, and it agrees with the graph's
    from sat_tf_edge.text import caption_text

    assert [caption_text(row, tokenizer.vocabulary) for row in ids] == expected
    assert any(tokenizer.end_id in row for row in ids) and len(set(expected)) > 1
