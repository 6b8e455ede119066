"""Does the photo hold what the caption names? A noun-verification head as a confidence signal.

A multi-label head (one logistic unit per word) on the encoder's mean annotation (the mean of the
region features the decoder reads), trained from the words of the training captions: a photo is a
positive for a word when one of its human captions says the word (weak labels; Flickr8k train and
the 750 COCO val2014 training photos). Words: the COCO categories (through
`sat_tf.data.coco_words.coco_category`: "man", "woman", "boy" -> person) and the content words
said about at least `--min-photos` training photos.

The signal of a caption: the head's probability of its least likely word (only the words the head
knows; a caption naming none gets the median), as a probability and as its log-ratio to the word's
training frequency. Measured as AUROC for right vs not right against the by-eye labels
(`benchmarks/labels/caption_judgments.json`), alone and mixed with the decoder's token
log-probability (logistic regression, 5-fold, out of fold), per dev set.

The training photos' features come from a feature cache of a run over those photos (a run of the
`coco-everyday` recipe: `runs/<run>/features/train` with its `run_config.json`), through the
model's own fine-tuned top:

    python -m benchmarks.studies.noun_verification --run runs/selftrain/student1 \
        --model everyday_lite0_448 --output benchmarks/results/noun_verification
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from benchmarks.common import add_output_argument

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import sat_tf  # noqa: E402, F401, I001  (first: sets TensorFlow's oneDNN switch as sat_tf's commands do)

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.model_selection import StratifiedKFold  # noqa: E402

from benchmarks.common import DATA, command_line, machine, write_report  # noqa: E402
from sat_tf.data.coco_words import coco_category  # noqa: E402
from sat_tf.data.feature_cache import FeatureCache  # noqa: E402
from sat_tf.data.images import load_image  # noqa: E402
from sat_tf.data.sources import load_captions  # noqa: E402
from sat_tf.evaluation.ranking import auroc  # noqa: E402
from sat_tf.models.imagenet_tagger import tag_vocabulary  # noqa: E402
from sat_tf.workflows.models import load_captioner  # noqa: E402
from sat_tf.workflows.run_config import RunConfig  # noqa: E402
from sat_tf_edge.text import FUNCTION_WORDS  # noqa: E402

JUDGMENTS = Path(__file__).resolve().parents[1] / "labels" / "caption_judgments.json"
BY_EYE = Path(__file__).resolve().parents[1] / "results" / "confidence_by_eye.json"


def label_of(word: str) -> str:
    """The head's label a caption word stands for: its COCO category, else the word (plural 's' off)."""
    category = coco_category(word)
    if category is not None:
        return category
    return word[:-1] if word.endswith("s") and len(word) > 3 else word


def caption_labels(caption: str) -> set[str]:
    return {label_of(w) for w in caption.lower().replace(".", " ").split() if w not in FUNCTION_WORDS}


def pooled_training_features(run: Path, model) -> tuple[np.ndarray, list[set[str]]]:
    """The mean annotation of every photo of the run's human-captioned sources, with the labels
    its captions say (computed once, then read from `<run>/noun_verification_features.npz`)."""
    stored = run / "noun_verification_features.npz"
    if stored.is_file():
        saved = np.load(stored, allow_pickle=False)
        return saved["pooled"], [set(json.loads(s)) for s in saved["labels"]]
    config = RunConfig.from_dict(json.loads((run / "run_config.json").read_text()))
    captions = load_captions(config.data, model.encoder.image_size, verbose=False)
    sources = captions.record_source or [0] * len(captions.records)
    human = {k for k, source in enumerate(config.data.sources(), start=1) if source.min_confidence is None}
    human.add(0)
    labels: dict[int, set[str]] = {}
    for record, index, source in zip(captions.records, captions.image_index, sources):
        if index >= 0 and source in human:
            labels.setdefault(index, set()).update(caption_labels(record.caption))
    rows = np.array(sorted(labels))
    cache = FeatureCache(run / "features" / "train")
    from_cache = tf.function(lambda x: tf.reduce_mean(model.features_from_cache(x), axis=1))
    pooled = np.concatenate(
        [from_cache(tf.constant(cache.gather(rows[s : s + 64]), tf.float32)).numpy() for s in range(0, len(rows), 64)]
    )
    photo_labels = [labels[int(r)] for r in rows]
    np.savez(stored, pooled=pooled, labels=np.array([json.dumps(sorted(x)) for x in photo_labels]))
    return pooled, photo_labels


def pooled_photo_features(model, paths: list[str]) -> np.ndarray:
    encode = tf.function(lambda x: tf.reduce_mean(model.encode(x), axis=1))
    size = model.encoder.image_size
    return np.concatenate(
        [
            encode(tf.constant(np.stack([load_image(p, size) for p in paths[s : s + 32]]), tf.float32)).numpy()
            for s in range(0, len(paths), 32)
        ]
    )


def train_head(features: np.ndarray, targets: np.ndarray, seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    head = keras.Sequential(
        [
            keras.Input((features.shape[1],)),
            keras.layers.Dropout(0.2),
            keras.layers.Dense(targets.shape[1], activation="sigmoid", kernel_regularizer=keras.regularizers.L2(1e-4)),
        ]
    )
    head.compile(keras.optimizers.Adam(1e-3), "binary_crossentropy")
    head.fit(features, targets, batch_size=128, epochs=30, verbose=0)
    return head


def out_of_fold_mix(columns: list[np.ndarray], right: np.ndarray) -> np.ndarray:
    x = np.stack(columns, axis=1)
    x = (x - x.mean(0)) / (x.std(0) + 1e-9)
    scores = np.zeros(len(right))
    for train, test in StratifiedKFold(5, shuffle=True, random_state=0).split(x, right):
        scores[test] = LogisticRegression(C=1.0).fit(x[train], right[train]).decision_function(x[test])
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="a coco-everyday run folder with its training feature cache")
    parser.add_argument("--model", default="everyday_lite0_448", help="the model whose encoder the head reads")
    parser.add_argument("--min-photos", type=int, default=30, help="a word needs this many training photos")
    parser.add_argument(
        "--words",
        choices=("content", "objects"),
        default="content",
        help="content: every content word; objects: the COCO categories and the ImageNet tag words",
    )
    add_output_argument(parser, "noun_verification")
    args = parser.parse_args()
    model = load_captioner(args.model)
    features, photo_labels = pooled_training_features(Path(args.run), model)
    counts: dict[str, int] = {}
    for labels in photo_labels:
        for label in labels:
            counts[label] = counts.get(label, 0) + 1
    words = sorted(w for w, n in counts.items() if n >= args.min_photos and w.isalpha())
    if args.words == "objects":
        objects = {coco_category(w) or "" for w in tag_vocabulary()[0]} | set(tag_vocabulary()[0])
        objects |= {label_of(w) for w in counts if coco_category(w) is not None}
        words = [w for w in words if w in objects]
    index = {w: k for k, w in enumerate(words)}
    targets = np.zeros((len(photo_labels), len(words)), np.float32)
    for row, labels in enumerate(photo_labels):
        targets[row, [index[w] for w in labels if w in index]] = 1.0
    prior = targets.mean(0)
    head = train_head(features, targets)
    print(f"head: {len(words)} words over {len(features)} photos", flush=True)

    judged = json.loads(JUDGMENTS.read_text())["pairs"]
    signals = json.loads(BY_EYE.read_text())["signals_by_pair"]
    paths = sorted({p["image"] for p in judged})
    probabilities = dict(zip(paths, head.predict(pooled_photo_features(model, [str(DATA / p) for p in paths]), 0)))
    rows = []
    for pair in judged:
        known = [index[w] for w in caption_labels(pair["caption"]) if w in index]
        p = probabilities[pair["image"]]
        rows.append(
            {
                "id": pair["id"],
                "dev_set": pair["dev_set"],
                "right": pair["label"] == "right",
                "weakest_word_probability": float(min(p[known])) if known else None,
                "weakest_word_lift": float(min(np.log(p[known] / prior[known]))) if known else None,
                "token_log_prob": signals[str(pair["id"])]["token_log_prob"],
            }
        )
    for name in ("weakest_word_probability", "weakest_word_lift"):
        median = float(np.median([r[name] for r in rows if r[name] is not None]))
        for r in rows:
            r[name] = median if r[name] is None else r[name]
    table = {}
    for dev_set in ("coco", "coco_val2014_dev", "coco_mini", "flickr8k_dev"):
        chosen = [r for r in rows if r["dev_set"].startswith(dev_set)]
        right = np.array([r["right"] for r in chosen])
        column = {k: np.array([r[k] for r in chosen]) for k in ("weakest_word_probability", "weakest_word_lift")}
        column["token_log_prob"] = np.array([r["token_log_prob"] for r in chosen])
        table[dev_set] = {name: auroc(values, right) for name, values in column.items()}
        for name in ("weakest_word_probability", "weakest_word_lift"):
            mixed = out_of_fold_mix([column["token_log_prob"], column[name]], right)
            table[dev_set][f"token_log_prob + {name}"] = auroc(mixed, right)
        table[dev_set]["pairs (right)"] = f"{len(chosen)} ({int(right.sum())})"
        print(dev_set, table[dev_set], flush=True)
    report = {
        "machine": machine(),
        "command": command_line(__spec__.name, args),
        "words": words,
        "training_photos": len(features),
        "auroc": table,
    }
    names = [k for k in next(iter(table.values())) if k != "pairs (right)"]
    lines = [
        f"Right vs not right by eye (AUROC), all judged pairs; head: {len(words)} words ({args.words}), "
        f"{len(features)} photos.",
        "",
        "| dev set | pairs (right) | " + " | ".join(names) + " |",
        "|---|---|" + "---|" * len(names),
    ]
    for dev_set, row in table.items():
        lines.append(f"| {dev_set} | {row['pairs (right)']} | " + " | ".join(f"{row[n]:.3f}" for n in names) + " |")
    write_report(args.output, report, "\n".join(lines))


if __name__ == "__main__":
    main()
