"""How far two people agree on the by-eye judgments: the ceiling of any confidence measured against them.

The trust goals ask a confidence to tell captions judged right from the others (AUROC by eye). One
person's judgment is itself noisy: a second person, judging the same (photo, caption) pairs by the same
`RULE`, blind to the first judgment and to any signal, is the best "confidence" there can be, and how
well their judgment ranks the first person's labels bounds what a signal can reach against them.

Draw a seeded sample of the committed judgments as contact sheets (photo, number and caption only):

    python -m benchmarks.quality.judge_agreement draw --count 200 --output runs/judgments_second

a second person (or several, each a share of the sheets) writes `{"<id>": label}` files; collect them
(committed in `benchmarks/labels/caption_judgments_second.json`) and measure:

    python -m benchmarks.quality.judge_agreement collect --pairs runs/judgments_second/pairs.json \
        --judged runs/judgments_second/labels_*.json --how "..."
    python -m benchmarks.quality.judge_agreement measure --output benchmarks/results/judge_agreement

The report gives, per dev set, the 3 x 3 table of the two judgments, their agreement and Cohen's
kappa, and the AUROC of the second judgment (right 2 > partly right 1 > wrong 0, ties half) for the
first's "right" against "not right", beside the AUROC of the signals `confidence_by_eye` measured on the
same pairs (read from its report: every pair's token log-probabilities under the default preset, the
least of which the default's confidence is a calibrated function of, and the sample consensus).
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import numpy as np

from benchmarks.quality.caption_judgments import LABELS, RULE, join_judgments, load_judgments
from benchmarks.quality.caption_judgments import draw as draw_pairs_and_sheets

SECOND_JUDGMENTS = Path(__file__).resolve().parents[1] / "labels" / "caption_judgments_second.json"
GRADE = {"wrong": 0, "partly right": 1, "right": 2}
SIGNALS_REPORT = Path(__file__).resolve().parents[1] / "results" / "confidence_by_eye.json"
COMPARED_SIGNALS = ("min_token_log_prob", "token_log_prob", "sample_consensus")
DEV_SETS = {
    "COCO dev (val2014 + mini)": ("coco_val2014_dev", "coco_mini"),
    "COCO val2014 dev": ("coco_val2014_dev",),
    "coco_mini": ("coco_mini",),
    "Flickr8k dev": ("flickr8k_dev",),
    "all": ("coco_val2014_dev", "coco_mini", "flickr8k_dev"),
}


def draw(count: int, seed: int, output: Path) -> None:
    """`count` committed pairs drawn at random (seeded), without their labels, as contact sheets."""
    pairs = [{k: v for k, v in p.items() if k != "label"} for p in load_judgments()]
    draw_pairs_and_sheets(output, seed, random.Random(seed).sample(pairs, count))


def collect(pairs_file: Path, judged: list[Path], how: str) -> None:
    """Joins the second person's `{"<id>": label}` files with the drawn pairs and writes the committed file."""
    from sat_tf.utils.atomic import write_json_atomic

    second = [{"id": p["id"], "label": p["label"]} for p in join_judgments(pairs_file, judged)]
    write_json_atomic(SECOND_JUDGMENTS, {"rule": RULE, "how": how, "labels": LABELS, "pairs": second})
    print(f"{len(second)} second judgments written to {SECOND_JUDGMENTS}")


def cohen_kappa(first: list[str], second: list[str]) -> float:
    """Agreement beyond chance: (observed - expected) / (1 - expected), expected from the two marginals."""
    categories = sorted(set(first) | set(second))
    observed = np.mean([a == b for a, b in zip(first, second)])
    expected = sum(first.count(c) / len(first) * second.count(c) / len(second) for c in categories)
    return float((observed - expected) / (1 - expected)) if expected < 1 else 1.0


def agreement_row(name: str, first: list[str], second: list[str], signals: dict[str, list[float]]) -> dict:
    """The two judgments of one group of pairs compared."""
    from sat_tf.evaluation.ranking import auroc

    right = [label == "right" for label in first]
    row = {
        "dev_set": name,
        "pairs": len(first),
        "table": {a: {b: sum(x == a and y == b for x, y in zip(first, second)) for b in LABELS} for a in LABELS},
        "agreement": float(np.mean([a == b for a, b in zip(first, second)])),
        "kappa": cohen_kappa(first, second),
        "right_agreement": float(np.mean([(a == "right") == (b == "right") for a, b in zip(first, second)])),
        "right_kappa": cohen_kappa([str(r) for r in right], [str(b == "right") for b in second]),
        "second_judge_auroc": auroc([GRADE[b] for b in second], right) if 0 < sum(right) < len(right) else None,
    }
    if 0 < sum(right) < len(right):
        row["signal_auroc"] = {name: auroc(values, right) for name, values in signals.items()}
    return row


def measure(output: str, signals_report: Path) -> None:
    """The report: per dev set, how the second judgment compares with the first, and how the signals do."""
    from benchmarks.common import machine, write_report

    first = {p["id"]: p for p in load_judgments()}
    second = json.loads(SECOND_JUDGMENTS.read_text())
    pairs = [(first[p["id"]], p["label"]) for p in second["pairs"]]
    measured = json.loads(signals_report.read_text())
    signal_of = measured["signals_by_pair"]
    rows = []
    for name, dev_sets in DEV_SETS.items():
        group = [(p, label) for p, label in pairs if p["dev_set"] in dev_sets]
        signals = {s: [signal_of[str(p["id"])][s] for p, _ in group] for s in COMPARED_SIGNALS}
        rows.append(agreement_row(name, [p["label"] for p, _ in group], [label for _, label in group], signals))
    table = agreement_table(rows, second["how"], measured["model"])
    command = f"python -m {__spec__.name} measure --signals {signals_report}"
    report = {"machine": machine(), "command": command, "how": second["how"], "signals_model": measured["model"]}
    write_report(output, report | {"rows": rows}, table)


def agreement_table(rows: list[dict], how: str, signals_model: str) -> str:
    header = "| pairs | agreement (3 labels) | kappa | agreement, right vs not | kappa | second judge's AUROC |"
    lines = [
        "Two people's by-eye judgments of the same (photo, caption) pairs, by the same rule, each blind to the",
        f"other and to any signal. Second judgments: {how}",
        "",
        f"AUROC for the first judgment's right against not right; the signals are {signals_model}'s.",
        "",
        "| dev set " + header + "".join(f" {s} |" for s in COMPARED_SIGNALS),
        "|---" * (7 + len(COMPARED_SIGNALS)) + "|",
    ]
    for r in rows:
        auroc_cell = "-" if r["second_judge_auroc"] is None else f"{r['second_judge_auroc']:.3f}"
        cells = [
            r["dev_set"],
            str(r["pairs"]),
            f"{r['agreement']:.0%}",
            f"{r['kappa']:.2f}",
            f"{r['right_agreement']:.0%}",
            f"{r['right_kappa']:.2f}",
            auroc_cell,
        ]
        cells += [f"{r['signal_auroc'][s]:.3f}" if "signal_auroc" in r else "-" for s in COMPARED_SIGNALS]
        lines.append("| " + " | ".join(cells) + " |")
    everything = rows[-1]["table"]
    lines += ["", "All pairs, first judgment (rows) against second (columns):", ""]
    lines += ["| first \\ second | " + " | ".join(LABELS) + " |", "|---" * (len(LABELS) + 1) + "|"]
    lines += [f"| {a} | " + " | ".join(str(everything[a][b]) for b in LABELS) + " |" for a in LABELS]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    drawing = commands.add_parser("draw", help="draw a sample of the judged pairs as contact sheets, labels hidden")
    drawing.add_argument("--count", type=int, default=200)
    drawing.add_argument("--seed", type=int, default=1)
    drawing.add_argument("--output", type=Path, default=Path("runs/judgments_second"))
    collecting = commands.add_parser("collect", help="join the second judgments with the pairs; commit them")
    collecting.add_argument("--pairs", type=Path, default=Path("runs/judgments_second/pairs.json"))
    collecting.add_argument("--judged", type=Path, nargs="+", required=True)
    collecting.add_argument("--how", required=True, help="who judged, how (sheets, rule), when")
    measuring = commands.add_parser("measure", help="compare the two judgments")
    measuring.add_argument("--output", default="runs/benchmarks/judge_agreement", help="report prefix (.json, .md)")
    measuring.add_argument(
        "--signals", type=Path, default=SIGNALS_REPORT, help="confidence_by_eye's report: every pair's signals"
    )
    args = parser.parse_args()
    if args.command == "draw":
        draw(args.count, args.seed, args.output)
    elif args.command == "collect":
        collect(args.pairs, args.judged, args.how)
    else:
        measure(args.output, args.signals)


if __name__ == "__main__":
    main()
