"""The standard caption metrics (coco-caption / pycocoevalcap) on the paper's 0-100 scale.

BLEU-1..4, METEOR, ROUGE-L and CIDEr, with coco-caption's Java PTB tokenizer. METEOR and the PTB
tokenizer need Java; without it, METEOR is left out (said in the result) and text is tokenized in
Python the way `CaptionTokenizer` does (lower-case, punctuation removed, whitespace split), which
differs from PTB only on contractions and unusual punctuation. SPICE is not offered: its scorer
downloads models at run time.
"""

from __future__ import annotations

import contextlib
import io
import shutil
from typing import Mapping, Sequence

from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.rouge.rouge import Rouge

from sat_tf.errors import SatTfError
from sat_tf.evaluation.bleu import normalize_for_scoring
from sat_tf.utils.quiet import silenced_stderr

TOKENIZATIONS = ("auto", "ptb", "python")


class JavaNotFoundError(SatTfError, RuntimeError):
    """PTB tokenization was requested but Java is not installed."""


def java_available() -> bool:
    return shutil.which("java") is not None


def _ptb_tokenize(captions: dict[str, list[str]]) -> dict[str, list[str]]:
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    return PTBTokenizer().tokenize({k: [{"caption": c} for c in v] for k, v in captions.items()})


def caption_metrics(
    references: Mapping[str, Sequence[str]],
    hypotheses: Mapping[str, str],
    tokenization: str = "auto",
    meteor: bool = True,
    quiet: bool = True,
) -> dict:
    """Scores one hypothesis per image against that image's references.

    Args:
        references: image id -> reference captions.
        hypotheses: image id -> generated caption (same ids).
        tokenization: "ptb" (Java), "python", or "auto" (PTB when Java is installed).
        meteor: compute METEOR (needs Java).
        quiet: hide the Java tools' progress lines (they write to the process's stderr).

    Returns:
        {"BLEU-1".."BLEU-4", "ROUGE-L", "CIDEr", ["METEOR"]} on 0-100, plus "tokenization" and,
        when something was left out, "notes".
    """
    if tokenization not in TOKENIZATIONS:
        raise ValueError(f"tokenization must be one of {TOKENIZATIONS}, got '{tokenization}'")
    if set(references) != set(hypotheses):
        raise ValueError(
            f"references and hypotheses cover different images, e.g. {sorted(set(references) ^ set(hypotheses))[:5]}"
        )
    if not references:
        raise ValueError("no images to score")
    notes = []
    has_java = java_available()
    if tokenization == "ptb" and not has_java:
        raise JavaNotFoundError("PTB tokenization needs Java ('java' is not on PATH); use tokenization='python'")
    use_ptb = tokenization == "ptb" or (tokenization == "auto" and has_java)
    if not use_ptb and tokenization == "auto":
        notes.append("Java not found: Python tokenization instead of coco-caption's PTB tokenizer")
    ids = sorted(references)
    gts = {i: list(references[i]) for i in ids}
    res = {i: [hypotheses[i]] for i in ids}
    if use_ptb:
        with silenced_stderr(quiet):
            gts, res = _ptb_tokenize(gts), _ptb_tokenize(res)
    else:
        gts = {i: normalize_for_scoring(v) for i, v in gts.items()}
        res = {i: normalize_for_scoring(v) for i, v in res.items()}
    scores: dict = {"tokenization": "ptb" if use_ptb else "python"}
    with contextlib.redirect_stdout(io.StringIO()), silenced_stderr(quiet):  # the scorers print progress
        bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
        scores.update({f"BLEU-{n + 1}": 100.0 * float(b) for n, b in enumerate(bleu)})
        scores["ROUGE-L"] = 100.0 * float(Rouge().compute_score(gts, res)[0])
        scores["CIDEr"] = 100.0 * float(Cider().compute_score(gts, res)[0])
        if meteor and has_java:
            from pycocoevalcap.meteor.meteor import Meteor

            scorer = Meteor()
            try:
                scores["METEOR"] = 100.0 * float(scorer.compute_score(gts, res)[0])
            finally:
                _close_meteor(scorer)
        elif meteor:
            notes.append("METEOR needs Java and was not computed")
    if notes:
        scores["notes"] = notes
    return scores


def _close_meteor(scorer) -> None:
    """Ends METEOR's Java subprocess (pycocoevalcap only does it at garbage collection)."""
    process = getattr(scorer, "meteor_p", None)
    if process is not None and process.poll() is None:
        with contextlib.suppress(Exception):
            process.stdin.close()
            process.kill()
            process.wait(timeout=10)
