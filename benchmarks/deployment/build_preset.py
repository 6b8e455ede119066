"""Builds the shipped preset from a trained model and measures what its weight storage costs.

Writes `sat_tf/presets/<name>/` (config.json + weights.npz) from `--model`, after decoding the
run's validation split (Flickr8k dev, 1,000 images; COCO val2014 dev, 100, for the everyday preset)
with the float32 model and with the preset stored as int8 and as float16: how many captions stay
identical, and the metrics of each (coco-caption). The preset records its own metrics, decoding
settings and how it was made.

The shipped presets, from scratch (the --name picks the provenance the preset states).
The default, everyday_selftrained_lite0_448 (everyday_lite0_448, built first, as the teacher and the
start; the checkout at /work/main, as the caption file records the photos' paths):

    sat-tf caption ../shared/data/coco_unlabeled/images --model everyday_lite0_448 --tag-guidance auto \\
        --output runs/selftrain/teacher_unlabeled.jsonl --resume
    sat-tf train --recipe coco-everyday --data-root ../shared/data --init-from everyday_lite0_448 \\
        --init-vocabulary model --epochs 2 --learning-rate 2e-4 --warmup-steps 100 --mix '[
        {"captions": "coco_val2014/coco_val2014.token.txt", "image_dir": "coco_val2014/images",
         "split_list": "coco_val2014/train_images.txt", "weight": 4},
        {"captions": "/work/main/runs/selftrain/teacher_unlabeled.jsonl", "image_dir": "/work/main",
         "min_confidence": 0.44, "weight": 3},
        {"captions": "coco_text/captions.jsonl", "text_only": true, "weight": 0.25}]' \\
        --output-dir runs/selftrain/student1
    python -m benchmarks.studies.weight_soup --model runs/selftrain/student1 everyday_lite0_448 \\
        --output runs/selftrain/soup
    python -m benchmarks.deployment.build_preset --model runs/selftrain/soup --name everyday_selftrained_lite0_448 \\
        --caption-tag-guidance off --output benchmarks/results/preset_everyday_selftrained.json
    python -m benchmarks.quality.confidence_calibration --model everyday_selftrained_lite0_448 --refresh \\
        --signals runs/benchmarks/calibration_signals_selftrained.npz \\
        --save sat_tf/presets/everyday_selftrained_lite0_448
    python -m benchmarks.quality.not_sure_threshold --right-flagged 0.25 --to-eye \\
        --preset-dir sat_tf/presets/everyday_selftrained_lite0_448

everyday_lite0_448, the previous default (Flickr8k + COCO photos + COCO text; needs the three folders of
../shared/data described in its README, and the flickr8k_lite0_448_distilled preset it starts from):

    sat-tf train --recipe coco-everyday --data-root ../shared/data --output-dir runs/everyday_text
    sat-tf train --config runs/everyday_text/run_config.json --scst-init-from runs/everyday_text/best_model.keras \\
        --precision float32 --learning-rate 5e-5 --schedule constant --warmup-steps 0 --batch-size 32 \\
        --epochs 1 --scst-num-samples 5 --scst-baseline leave_one_out --scst-max-length 16 \\
        --feature-cache runs/everyday_text/features/train --val-feature-cache runs/everyday_text/features/validation \\
        --output-dir runs/everyday_scst
    python -m benchmarks.deployment.build_preset --model runs/everyday_scst --name everyday_lite0_448 \\
        --caption-tag-guidance off --output benchmarks/results/preset_everyday.json

flickr8k_lite0_448 (14x14 regions):

    sat-tf train --recipe flickr8k-lite0-ft --image-size 448 --data-root ../shared/data/flickr8k \\
        --output-dir runs/ft448
    sat-tf train --recipe flickr8k-lite0-scst --image-size 448 --data-root ../shared/data/flickr8k \\
        --scst-init-from runs/ft448/model.keras --epochs 5 --output-dir runs/ft448_scst \\
        --feature-cache runs/ft448/features/train --val-feature-cache runs/ft448/features/validation
    python -m benchmarks.deployment.build_preset --model runs/ft448_scst --name flickr8k_lite0_448 \\
        --output benchmarks/results/preset_448.json

The default, flickr8k_lite0_448_distilled: flickr8k_lite0_448's model distilled from the
ensemble of flickr8k_lite0_448 and flickr8k_lite0 (both built first), in two stages
(`benchmarks/studies/distillation.py` runs the same and scores them):

    sat-tf distill --model flickr8k_lite0_448 flickr8k_lite0 --beam-size 3 \\
        --data-root ../shared/data/flickr8k --captions Flickr8k.token.txt --image-dir images \\
        --split-list Flickr_8k.trainImages.txt --output runs/distill/teacher_teacher.jsonl
    sat-tf train --config runs/ft448_scst/run_config.json --scst-init-from none \\
        --init-from runs/ft448_scst/best_model.keras --captions "$PWD/runs/distill/teacher_teacher.jsonl" \\
        --learning-rate 3e-4 --epochs 4 --batch-size 64 --bucket-by-length --output-dir runs/distill/ce-teacher
    sat-tf distill --model flickr8k_lite0_448 flickr8k_lite0 --beam-size 3 --with-references \\
        --data-root ../shared/data/flickr8k --captions Flickr8k.token.txt --image-dir images \\
        --split-list Flickr_8k.trainImages.txt --output runs/distill/teacher_mixed.jsonl
    sat-tf train --config runs/ft448_scst/run_config.json \\
        --scst-init-from runs/distill/ce-teacher/best_model.keras \\
        --captions "$PWD/runs/distill/teacher_mixed.jsonl" --epochs 2 --output-dir runs/distill/scst-teacher
    python -m benchmarks.deployment.build_preset --model runs/distill/scst-teacher \\
        --name flickr8k_lite0_448_distilled \\
        --output benchmarks/results/preset_448_distilled.json

flickr8k_lite0 (7x7 regions, the first preset):

    sat-tf train --recipe flickr8k-lite0-ft --precision float32 --data-root ../shared/data/flickr8k \\
        --output-dir runs/flickr8k_ft
    sat-tf train --recipe flickr8k-lite0-scst --data-root ../shared/data/flickr8k \\
        --scst-init-from runs/flickr8k_ft/model.keras --epochs 5 --output-dir runs/flickr8k_ft_scst \\
        --feature-cache runs/flickr8k_ft/features/train --val-feature-cache runs/flickr8k_ft/features/validation
    python -m benchmarks.deployment.build_preset --model runs/flickr8k_ft_scst --name flickr8k_lite0

Needs the Flickr8k folder described in ../shared/data/README.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import tempfile
from pathlib import Path

from benchmarks.common import add_output_argument

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks.common import machine  # noqa: E402
from sat_tf.models.preset import save_preset  # noqa: E402
from sat_tf.utils.atomic import write_json_atomic  # noqa: E402
from sat_tf.workflows import evaluate_captioner, load_captioner  # noqa: E402
from sat_tf.workflows.evaluate import default_evaluation_data  # noqa: E402
from sat_tf.workflows.model_reference import resolve_model  # noqa: E402

METRICS = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr")
# How each preset was made, as its config.json states it.
PROVENANCE = {
    "flickr8k_lite0": (
        "Trained on the 6,000 Flickr8k training images (Hodosh, Young & Hockenmaier 2013; the dataset is "
        "for research use only) with the commands in benchmarks/deployment/build_preset.py: the flickr8k-lite0-ft "
        "recipe (EfficientNet-Lite0 ImageNet encoder, its last stage and head fine-tuned, 512/512/512 soft-"
        "attention decoder, 6 epochs of cross-entropy), then 5 epochs of self-critical training on CIDEr-D "
        "from the last epoch; selected on Flickr8k dev CIDEr-D. Metrics: Flickr8k dev, 1,000 images, coco-caption."
    ),
    "flickr8k_lite0_448": (
        "Trained on the 6,000 Flickr8k training images (Hodosh, Young & Hockenmaier 2013; the dataset is "
        "for research use only) with the commands in benchmarks/deployment/build_preset.py: the flickr8k-lite0-ft "
        "recipe at 448 px (EfficientNet-Lite0 ImageNet encoder giving a 14x14 grid of regions, its last "
        "stage and head fine-tuned, 512/512/512 soft-attention decoder, 6 epochs of cross-entropy), then "
        "5 epochs of self-critical training on CIDEr-D from the last epoch; selected on Flickr8k dev "
        "CIDEr-D. Metrics: Flickr8k dev, 1,000 images, coco-caption."
    ),
    "flickr8k_lite0_448_distilled": (
        "Trained on the 6,000 Flickr8k training images (Hodosh, Young & Hockenmaier 2013; the dataset is "
        "for research use only) with the commands in benchmarks/deployment/build_preset.py: the flickr8k_lite0_448 "
        "preset's model (14x14 regions; 6 epochs of cross-entropy, 5 of self-critical training), distilled "
        "from the ensemble of the presets flickr8k_lite0_448 and flickr8k_lite0: 4 epochs of cross-entropy "
        "on the ensemble's beam-3 captions of the training images (learning rate 3e-4, the epoch selected on "
        "validation), then 2 epochs of self-critical training on CIDEr-D with the ensemble's caption as a "
        "sixth reference (selected on Flickr8k dev CIDEr-D). Metrics: Flickr8k dev, 1,000 images, coco-caption."
    ),
    "everyday_lite0_448": (
        "Trained with the coco-everyday recipe (benchmarks/deployment/build_preset.py) on three sources at once: the "
        "6,000 Flickr8k training photos (Hodosh, Young & Hockenmaier 2013; research use only), 750 COCO "
        "val2014 photos with their captions (shown 4 times an epoch), and COCO captions without photos "
        "(172,259 captions of 34,428 other photos, CC BY 4.0; a quarter of them, drawn anew each epoch, "
        "train the decoder's language through its learned 'no photo' annotation). Started from the "
        "flickr8k_lite0_448_distilled preset (its words' rows kept, the vocabulary grown to the 5,000 most "
        "frequent words of all sources), 2 epochs of cross-entropy at 14x14 regions (the epoch selected on "
        "COCO val2014 dev BLEU-4), then 1 epoch of self-critical training on CIDEr-D over the paired photos "
        "(selected on COCO val2014 dev CIDEr-D). Metrics: COCO val2014 dev, 100 photos, coco-caption."
    ),
    "everyday_selftrained_lite0_448": (
        "The everyday_lite0_448 preset's model improved by self-training (benchmarks/deployment/build_preset.py): "
        "that preset, with tag guidance 'auto', captioned 3,000 COCO train2014 photos without captions "
        "(256 px); a student started from it trained 2 epochs on Flickr8k's 6,000 training photos, the 750 "
        "COCO val2014 photos with their captions (shown 4 times an epoch), the 1,686 pseudo-captions the "
        "teacher was sure of (calibrated confidence >= 0.44; 3 times an epoch) and COCO captions without "
        "photos (a quarter an epoch), learning rate 2e-4, cosine schedule; the preset is the mean of the "
        "student's weights and its start's (a weight soup, Wortsman et al. 2022), chosen on COCO val2014 dev "
        "CIDEr-D. Metrics: COCO val2014 dev, 100 photos, coco-caption."
    ),
}


def _median_confidence(report: dict) -> float:
    return float(statistics.median(report["confidence"].values()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="the trained run folder (its best_model.keras) or file")
    parser.add_argument("--name", default="flickr8k_lite0_448_distilled", choices=list(PROVENANCE))
    parser.add_argument("--weight-format", default="int8", choices=["int8", "float16", "float32"])
    parser.add_argument(
        "--caption-tag-guidance",
        choices=["auto", "off", "on"],
        help="the tag guidance `sat-tf caption` uses with this preset (default: the run's setting)",
    )
    add_output_argument(parser, "preset.json")
    args = parser.parse_args()
    decoding = resolve_model(args.model).decoding
    if args.caption_tag_guidance is not None:
        decoding = dataclasses.replace(decoding, caption_tag_guidance=args.caption_tag_guidance)
    data = default_evaluation_data(args.model)
    model = load_captioner(args.model)

    def evaluate(path) -> dict:
        return evaluate_captioner([str(path)], data, decoding, verbose=False)

    reference = evaluate(args.model)
    report = {
        "machine": machine(),
        "model": str(args.model),
        "decoding": dataclasses.asdict(decoding),
        "float32": {**{k: reference[k] for k in METRICS}, "median_confidence": _median_confidence(reference)},
    }
    with tempfile.TemporaryDirectory() as scratch:
        for weight_format in ("int8", "float16"):
            folder = save_preset(
                model, Path(scratch) / weight_format, dataclasses.asdict(decoding), weight_format=weight_format
            )
            scored = evaluate(folder)
            same = sum(scored["captions"][k] == reference["captions"][k] for k in reference["captions"])
            report[weight_format] = {
                **{k: scored[k] for k in METRICS},
                "captions_unchanged": same,
                "images": len(reference["captions"]),
                "weights_bytes": (folder / "weights.npz").stat().st_size,
                "median_confidence": _median_confidence(scored),
            }
    shipped = report[args.weight_format] if args.weight_format != "float32" else report["float32"]
    # "not sure" below the median confidence of the shipped weights' dev captions: half of them pass
    decoding = dataclasses.replace(decoding, not_sure_below=round(shipped["median_confidence"], 3))
    target = Path(__file__).resolve().parents[2] / "sat_tf" / "presets" / args.name
    save_preset(
        model,
        target,
        dataclasses.asdict(decoding),
        metrics={k: round(shipped[k], 2) for k in ("BLEU-4", "METEOR", "CIDEr", "BLEU-1", "ROUGE-L")},
        provenance=PROVENANCE[args.name],
        weight_format=args.weight_format,
    )
    report["preset"] = {
        "folder": str(target),
        "weight_format": args.weight_format,
        "bytes": sum(f.stat().st_size for f in target.iterdir() if f.is_file()),
    }
    print(report)
    write_json_atomic(args.output, report)


if __name__ == "__main__":
    main()
