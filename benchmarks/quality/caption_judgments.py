"""Captions judged by eye: the (photo, caption) pairs a person labels right, partly right or wrong.

The per-photo CIDEr-D label calls half of all captions "worse" by definition, right or not; a
person looking at the photo does not. This script makes the pairs and the contact sheets a person
labels by looking, blind to any confidence:

    python -m benchmarks.quality.caption_judgments draw [--output runs/judgments]

captions dev photos (COCO val2014 dev, coco_mini at original size, the first Flickr8k dev photos)
with the default preset (its beam's best and second-best caption) and the previous default
(`flickr8k_lite0_448_distilled`, its best caption), keeps each distinct caption of a photo once,
shuffles the pairs (seeded) and writes `pairs.json` (no confidence, no score, no source on the
sheets) and `sheets/sheet_NN.png`, 20 numbered pairs a sheet. The judgments, one per pair by
`RULE`, are committed in `benchmarks/labels/caption_judgments.json` (`--judged` checks a file of
them against the pairs and writes it there):

    python -m benchmarks.quality.caption_judgments collect --judged runs/judgments/labels_*.json

A new model (or new decoding settings) adds the pairs of its captions that no one has judged yet,
numbered after the committed ones, judged the same way and appended:

    python -m benchmarks.quality.caption_judgments more --model runs/student --source student \
        --output runs/judgments_student
    python -m benchmarks.quality.caption_judgments collect --append --pairs runs/judgments_student/pairs.json \
        --judged runs/judgments_student/labels_*.json --how "..."

How good a model's captions are by eye, once every one of them is judged: the share of its own
captions (as `sat-tf caption` decodes them) judged right, partly right and wrong, per dev set:

    python -m benchmarks.quality.caption_judgments score --model everyday_lite0_448 runs/student \
        --output benchmarks/results/judged_captions
"""

from __future__ import annotations

import argparse
import json
import os
import random
import textwrap
from pathlib import Path

from benchmarks.common import DATA, coco_data, coco_dev, flickr_dev

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

JUDGMENTS = Path(__file__).resolve().parents[1] / "labels" / "caption_judgments.json"
LABELS = ("right", "partly right", "wrong")
RULE = (
    "Look at the photo, then read the caption. 'right': everything the caption names (people, animals, "
    "objects, the place) is in the photo and what it says they do or where they are is true; a vague but "
    "true caption ('a man standing in a room') is right. 'partly right': the main subject is named "
    "correctly but something else the caption says is wrong (a named object that is not there, a wrong "
    "action, count or colour, a repeated or garbled phrase); a person named with the wrong sex or age ('a "
    "man' for a woman or a toddler) counts as partly right. 'wrong': the main subject is misnamed or the "
    "caption describes a scene that is not the photo's."
)
SHEET_SIZE = 20
# the presets the first sheets were drawn from: the default and the previous default at the time
DRAWN_DEFAULT, DRAWN_PREVIOUS = "everyday_lite0_448", "flickr8k_lite0_448_distilled"
FLICKR_PHOTOS = 60


def dev_photos() -> dict[str, list[str]]:
    """dev set -> photo paths: COCO val2014 dev (100), coco_mini (79), the first Flickr8k dev photos."""
    from sat_tf.data.sources import load_captions

    photos = {}
    for name, data in (("coco_val2014_dev", coco_dev()), ("coco_mini", coco_data()), ("flickr8k_dev", flickr_dev())):
        paths = list(dict.fromkeys(load_captions(data, 224, verbose=False).image_paths))
        photos[name] = paths[:FLICKR_PHOTOS] if name == "flickr8k_dev" else paths
    return photos


def data_relative(path: str) -> str:
    """A photo's path under ../shared/data, as the judgments name it."""
    return str(Path(path).resolve().relative_to(DATA.resolve()))


def caption_candidates(preset: str, paths: list[str], alternatives: int) -> list[list[str]]:
    """Per photo: the preset's best caption and its beam's next `alternatives` ones, as `sat-tf caption`
    decodes them (the preset's own decoding settings)."""
    from sat_tf.workflows import caption_files, load_for_captioning

    loaded = load_for_captioning([preset], as_caption_command=True)
    records = caption_files(loaded.model, paths, loaded.decoding).records()
    return [[r["caption"], *[c for c in r["candidates"] if c != r["caption"]][:alternatives]] for r in records]


def draw_pairs(seed: int = 0) -> list[dict]:
    """Every distinct (photo, caption) of the candidates, shuffled, numbered from 1."""
    pairs = []
    for dev_set, paths in dev_photos().items():
        default = caption_candidates(DRAWN_DEFAULT, paths, alternatives=1)
        previous = caption_candidates(DRAWN_PREVIOUS, paths, alternatives=0)
        for path, ours, theirs in zip(paths, default, previous):
            sources = {}
            for caption, source in zip([*ours, *theirs], ["default", "default_beam_2", "previous_default"]):
                sources.setdefault(caption, source)
            image = data_relative(path)
            pairs += [{"dev_set": dev_set, "image": image, "caption": c, "source": s} for c, s in sources.items()]
    random.Random(seed).shuffle(pairs)
    return [{"id": number, **pair} for number, pair in enumerate(pairs, start=1)]


def unjudged_pairs(model: str, source: str, judged: list[dict]) -> list[dict]:
    """The (photo, caption) pairs of `model`'s best captions of the dev photos (as `sat-tf caption`
    decodes them) that `judged` does not hold, shuffled, numbered after its last id."""
    seen = {(p["image"], p["caption"]) for p in judged}
    pairs = []
    for dev_set, paths in dev_photos().items():
        for path, (caption,) in zip(paths, caption_candidates(model, paths, alternatives=0)):
            image = data_relative(path)
            if (image, caption) not in seen:
                seen.add((image, caption))
                pairs.append({"dev_set": dev_set, "image": image, "caption": caption, "source": source})
    random.Random(len(judged)).shuffle(pairs)
    first = max(p["id"] for p in judged) + 1
    return [{"id": number, **pair} for number, pair in enumerate(pairs, start=first)]


def score(models: list[str], output: str) -> None:
    """Per model and dev set, how many of its own captions were judged right, partly right and
    wrong (every caption must have been judged: `more` and `collect --append` first)."""
    from benchmarks.common import machine, write_report

    judged = {(p["image"], p["caption"]): p["label"] for p in load_judgments()}
    rows = []
    for model in models:
        for dev_set, paths in dev_photos().items():
            captions = [caption for (caption,) in caption_candidates(model, paths, alternatives=0)]
            images = [data_relative(path) for path in paths]
            labels = [judged.get((image, caption)) for image, caption in zip(images, captions)]
            if None in labels:
                raise SystemExit(f"{model}: {labels.count(None)} of its {dev_set} captions are not judged; run `more`")
            counts = {label: labels.count(label) for label in LABELS}
            rows.append({"model": model, "dev_set": dev_set, "photos": len(labels), **counts})
            print(json.dumps(rows[-1]), flush=True)
    table = "\n".join(
        [
            "Each model's own captions of the dev photos (beam 3, its `sat-tf caption` settings), judged by eye "
            "by `RULE` (benchmarks/labels/caption_judgments.json):",
            "",
            "| model | dev set | photos | right | partly right | wrong |",
            "|---|---|---|---|---|---|",
            *[
                f"| {r['model']} | {r['dev_set']} | {r['photos']} | "
                + " | ".join(f"{r[label]} ({r[label] / r['photos']:.0%})" for label in LABELS)
                + " |"
                for r in rows
            ],
        ]
    )
    report = {"machine": machine(), "command": f"python -m {__spec__.name} score --model {' '.join(models)}"}
    write_report(output, report | {"rows": rows}, table)


def draw_sheet(pairs: list[dict], path: Path) -> None:
    """A contact sheet: each pair's photo (fit in 280 px) with its number and caption below."""
    from PIL import Image, ImageDraw, ImageFont

    columns, cell_width, photo_size, text_height = 5, 300, 280, 90
    rows = (len(pairs) + columns - 1) // columns
    sheet = Image.new("RGB", (columns * cell_width, rows * (photo_size + text_height)), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.truetype("DejaVuSans.ttf", 15)
    for index, pair in enumerate(pairs):
        x, y = (index % columns) * cell_width, (index // columns) * (photo_size + text_height)
        photo = Image.open(DATA / pair["image"]).convert("RGB")
        photo.thumbnail((photo_size, photo_size))
        sheet.paste(photo, (x + (cell_width - photo.width) // 2, y + 4))
        lines = textwrap.wrap(f"#{pair['id']}: {pair['caption']}", 34)[:4]
        draw.multiline_text((x + 8, y + photo_size + 8), "\n".join(lines), fill="black", font=font, spacing=3)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)


def draw(output: Path, seed: int, pairs: list[dict] | None = None) -> None:
    from sat_tf.utils.atomic import write_json_atomic

    pairs = draw_pairs(seed) if pairs is None else pairs
    write_json_atomic(output / "pairs.json", {"rule": RULE, "labels": LABELS, "pairs": pairs})
    for start in range(0, len(pairs), SHEET_SIZE):
        draw_sheet(pairs[start : start + SHEET_SIZE], output / "sheets" / f"sheet_{start // SHEET_SIZE + 1:02d}.png")
    print(f"{len(pairs)} pairs, {(len(pairs) + SHEET_SIZE - 1) // SHEET_SIZE} sheets in {output}")


def join_judgments(pairs_file: Path, judged: list[Path]) -> list[dict]:
    """The drawn pairs, each with its label from the judgment files ({"<id>": label}); every pair
    must be judged once, with one of `LABELS`."""
    pairs = json.loads(pairs_file.read_text())["pairs"]
    labels: dict[str, str] = {}
    for file in judged:
        for key, label in json.loads(file.read_text()).items():
            if label not in LABELS:
                raise SystemExit(f"{file}: pair {key}: label must be one of {LABELS}; got {label!r}")
            if key in labels:
                raise SystemExit(f"{file}: pair {key} is judged twice")
            labels[key] = label
    missing = [str(p["id"]) for p in pairs if str(p["id"]) not in labels]
    if missing:
        raise SystemExit(f"{len(missing)} pairs have no judgment: {', '.join(missing[:10])}")
    return [{**p, "label": labels[str(p["id"])]} for p in pairs]


def collect(pairs_file: Path, judged: list[Path], how: str, append: bool = False) -> None:
    """Joins the judgment files with the pairs (`join_judgments`) and writes the committed file (with
    `append`, after the pairs it holds)."""
    from sat_tf.utils.atomic import write_json_atomic

    judged_pairs = join_judgments(pairs_file, judged)
    if append:
        committed = json.loads(JUDGMENTS.read_text())
        clash = {p["id"] for p in committed["pairs"]} & {p["id"] for p in judged_pairs}
        if clash:
            raise SystemExit(f"pair ids {sorted(clash)[:5]} are already in {JUDGMENTS}")
        how = f"{committed['how']} Then: {how}"
        judged_pairs = committed["pairs"] + judged_pairs
    write_json_atomic(JUDGMENTS, {"rule": RULE, "how": how, "labels": LABELS, "pairs": judged_pairs})
    counts = {label: sum(p["label"] == label for p in judged_pairs) for label in LABELS}
    print(f"{len(judged_pairs)} judgments written to {JUDGMENTS}: {counts}")


def load_judgments(path: Path = JUDGMENTS) -> list[dict]:
    """The committed judgments: dicts with dev_set, image (under ../shared/data), caption, source, label."""
    return json.loads(Path(path).read_text())["pairs"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    drawing = commands.add_parser("draw", help="caption the dev photos and draw the contact sheets")
    drawing.add_argument("--output", type=Path, default=Path("runs/judgments"))
    drawing.add_argument("--seed", type=int, default=0)
    more = commands.add_parser("more", help="draw the sheets of a model's captions no one has judged yet")
    more.add_argument("--model", required=True, help="preset name, run folder or .keras file")
    more.add_argument("--source", required=True, help="what the pairs' 'source' field calls them")
    more.add_argument("--output", type=Path, required=True)
    scoring = commands.add_parser("score", help="each model's own captions judged right / partly / wrong")
    scoring.add_argument("--model", nargs="+", required=True, help="preset names, run folders or .keras files")
    scoring.add_argument("--output", default="runs/benchmarks/judged_captions", help="report prefix (.json, .md)")
    collecting = commands.add_parser("collect", help="join the judgments with the pairs; write the committed file")
    collecting.add_argument("--append", action="store_true", help="add to the committed judgments")
    collecting.add_argument("--pairs", type=Path, default=Path("runs/judgments/pairs.json"))
    collecting.add_argument("--judged", type=Path, nargs="+", required=True)
    collecting.add_argument("--how", required=True, help="who judged, how (sheets, rule), when")
    args = parser.parse_args()
    if args.command == "draw":
        draw(args.output, args.seed)
    elif args.command == "more":
        draw(args.output, 0, unjudged_pairs(args.model, args.source, load_judgments()))
    elif args.command == "score":
        score(args.model, args.output)
    else:
        collect(args.pairs, args.judged, args.how, args.append)


if __name__ == "__main__":
    main()
