"""Corpus BLEU-1..4 with the coco-caption scorer (pycocoevalcap), on the paper's 0-100 scale."""

from __future__ import annotations

from typing import Mapping, Sequence

from pycocoevalcap.bleu.bleu import Bleu

from sat_tf.data.tokenizer import split_words


def normalize_for_scoring(sentences: Sequence[str]) -> list[str]:
    """Lower-cased, punctuation-free, single-spaced: the same normalisation as the tokenizer."""
    if not sentences:
        return []
    return [" ".join(w.decode("utf-8") for w in words) for words in split_words(list(sentences)).to_list()]


def corpus_bleu(references: Mapping[str, Sequence[str]], hypotheses: Mapping[str, str]) -> dict[str, float]:
    """BLEU-1..4 (0-100) of one hypothesis per image against that image's references.

    Uses coco-caption's BleuScorer ("closest" reference length for the brevity penalty), the
    standard in captioning papers. Text is normalised as `CaptionTokenizer` does (this stands in
    for coco-caption's Java PTB tokenizer, which the full metric suite will use).

    Args:
        references: image id -> reference captions.
        hypotheses: image id -> generated caption; must cover the same ids as `references`.
    """
    if set(references) != set(hypotheses):
        missing = sorted(set(references) ^ set(hypotheses))[:5]
        raise ValueError(f"references and hypotheses cover different images, e.g. {missing}")
    if not references:
        raise ValueError("no images to score")
    ids = sorted(references)
    gts, res = {}, {}
    for image_id in ids:
        refs = normalize_for_scoring(list(references[image_id]))
        if not refs:
            raise ValueError(f"image {image_id}: no reference captions")
        gts[image_id] = refs
        res[image_id] = normalize_for_scoring([hypotheses[image_id]])
    scores, _ = Bleu(4).compute_score(gts, res, verbose=0)
    return {f"BLEU-{n + 1}": 100.0 * float(score) for n, score in enumerate(scores)}
