import numpy as np
import pytest

import sat_tf.evaluation.metrics as metrics_module
from sat_tf.evaluation.bleu import corpus_bleu
from sat_tf.evaluation.metrics import caption_metrics

REFS = {
    "1": ["A red circle above a blue square.", "a red circle over a blue square"],
    "2": ["a dog runs on the grass", "the dog is running"],
    "3": ["two people ride bikes", "people riding bicycles"],
}
HYPS = {"1": "a red circle above a blue square", "2": "a dog running on grass", "3": "a man rides a bike"}


@pytest.mark.skipif(not metrics_module.java_available(), reason="Java is not installed")
def test_ptb_and_python_tokenization_agree_on_plain_sentences():
    ptb = caption_metrics(REFS, HYPS, tokenization="ptb")
    python = caption_metrics(REFS, HYPS, tokenization="python", meteor=False)
    for key in ("BLEU-1", "BLEU-4", "ROUGE-L", "CIDEr"):
        np.testing.assert_allclose(ptb[key], python[key], rtol=1e-9)
    assert 0 < ptb["METEOR"] < 100 and ptb["tokenization"] == "ptb"
    # BLEU here is the same scorer as the demo's corpus_bleu
    bleu = corpus_bleu(REFS, HYPS)
    np.testing.assert_allclose(python["BLEU-4"], bleu["BLEU-4"], rtol=1e-9)


def test_perfect_captions_score_100():
    refs = {"a": ["a cat on a mat"], "b": ["two dogs play in the snow"]}
    scores = caption_metrics(
        refs, {"a": "a cat on a mat", "b": "two dogs play in the snow"}, tokenization="python", meteor=False
    )
    for key in ("BLEU-1", "BLEU-4", "ROUGE-L"):
        np.testing.assert_allclose(scores[key], 100.0, rtol=1e-6)


def test_without_java_scores_what_it_can_and_says_so(monkeypatch):
    monkeypatch.setattr(metrics_module, "java_available", lambda: False)
    scores = caption_metrics(REFS, HYPS)
    assert scores["tokenization"] == "python" and "METEOR" not in scores
    assert any("Java" in note for note in scores["notes"])
    assert {"BLEU-4", "ROUGE-L", "CIDEr"} <= set(scores)
    with pytest.raises(RuntimeError, match="needs Java"):
        caption_metrics(REFS, HYPS, tokenization="ptb")
