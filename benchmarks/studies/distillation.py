"""What distilling an ensemble into one model buys (sequence-level knowledge distillation).

The teacher (`--teacher`, an ensemble of presets or runs) captions the Flickr8k training images
(`sat_tf.workflows.distill`, as `sat-tf distill` does); a student (`--student`, a trained run
folder whose feature caches its run settings name) then trains on them, in two stages:

    ce-teacher    cross-entropy on the teacher's captions alone (Kim & Rush 2016), from the
                  student's best model: 4 epochs, learning rate 3e-4, selected on validation
    scst-teacher  self-critical CIDEr-D from ce-teacher's best model, with the teacher's caption as
                  a sixth reference of each image: 2 epochs, learning rate 5e-5

Every model (teacher, student before, each student after) is scored on the 1,000 Flickr8k dev
images (beam 3, trigram blocking, `<unk>` never emitted: the presets' settings; coco-caption) and on where the attention
of object words lands on the COCO photos (`sat_tf.evaluation.grounding`). Finished stages (run
folders with model.keras under --work) are scored, not trained again.

    python -m benchmarks.studies.distillation --teacher flickr8k_lite0_448 flickr8k_lite0 \\
        --student runs/ft448_scst --work runs/distill [--output benchmarks/results/distillation]

Needs the Flickr8k folder described in ../shared/data/README.md and the COCO photos' masks.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path

from benchmarks.common import add_output_argument

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks.common import command_line, machine, train_stage, write_report  # noqa: E402
from benchmarks.studies.grounding_levers import score  # noqa: E402
from sat_tf.workflows.distill import write_distillation_captions  # noqa: E402
from sat_tf.workflows.run_config import RUN_CONFIG_FILE, resolve_run_config  # noqa: E402

# stage -> the captions it trains on ("teacher" alone, or "mixed": the references and the teacher's),
# the model it starts from ("student" or an earlier stage) and its training settings
STAGES = {
    "ce-teacher": (
        "teacher",
        "student",
        {"learning_rate": 3e-4, "epochs": 4, "batch_size": 64, "bucket_by_length": True},
    ),
    "scst-teacher": ("mixed", "ce-teacher", {"learning_rate": 5e-5, "epochs": 2, "batch_size": 32}),
}


def teacher_captions(teachers: list[str], student_config, work: Path, kind: str, beam_size: int) -> Path:
    """The teacher's captions of the student's training split (written once per kind)."""
    path = work / f"teacher_{kind}.jsonl"
    if not path.is_file():
        decoding = dataclasses.replace(student_config.decoding, beam_size=beam_size, tag_guidance="off")
        data = dataclasses.replace(student_config.data, feature_cache=None)  # the teacher's own encoders
        write_distillation_captions(teachers, data, decoding, path, with_references=kind == "mixed")
    return path


def stage_overrides(stage: str, start: Path, captions: Path) -> dict:
    """The stage's settings over the student's run config: its captions, start model and training."""
    _, _, training = STAGES[stage]
    self_critical = stage.startswith("scst")
    return {
        # absolute: a relative caption file would be read from the run's data_root
        "data": {"captions": str(captions.resolve()), "split_list": None},
        "training": {
            **training,
            "schedule": "constant",
            "warmup_steps": 0,
            "init_from": None if self_critical else str(start),
        },
        "scst": {"init_from": str(start) if self_critical else None},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", nargs="+", required=True, help="presets or runs decoded as one ensemble")
    parser.add_argument("--student", required=True, help="the trained run folder the student starts from")
    parser.add_argument("--work", default="runs/distill")
    parser.add_argument("--beam-size", type=int, default=3)
    add_output_argument(parser, "distillation")
    args = parser.parse_args()
    student, work = Path(args.student), Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    student_config = resolve_run_config(None, str(student / RUN_CONFIG_FILE))
    rows = {
        f"teacher ({' + '.join(args.teacher)})": score(
            list(args.teacher), student, args.beam_size, kept=work / f"teacher_beam{args.beam_size}.json"
        ),
        f"student before ({student})": score(student / "best_model.keras", student, args.beam_size),
    }
    for stage, (kind, start, _) in STAGES.items():
        captions = teacher_captions(args.teacher, student_config, work, kind, args.beam_size)
        start_dir = student if start == "student" else work / start
        run_dir = work / stage
        overrides = stage_overrides(stage, start_dir / "best_model.keras", captions)
        timing = train_stage(run_dir, None, overrides, config=str(student / RUN_CONFIG_FILE))
        rows[stage] = {
            **score(run_dir / "best_model.keras", run_dir, args.beam_size),
            "train_seconds": timing.get("train_seconds"),
        }
        print(stage, rows[stage], flush=True)
    report = {"machine": machine(), "command": command_line(__spec__.name, args), "rows": rows}
    lines = [
        "| model | grid | BLEU-4 | METEOR | CIDEr | COCO lift | peak on the object | training |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        minutes = f"{r['train_seconds'] / 60:.0f} min" if r.get("train_seconds") else ""
        lines.append(
            f"| {name} | {r['grid']} | {r['BLEU-4']:.1f} | {r['METEOR']:.1f} | {r['CIDEr']:.1f} | "
            f"{r['lift']:.2f}x | {100 * r['peak_on_object']:.0f}% | {minutes} |"
        )
    write_report(args.output, report, "\n".join(lines))


if __name__ == "__main__":
    main()
