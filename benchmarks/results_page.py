"""Writes benchmarks/RESULTS.md from benchmarks/results/*.json, so no figure on the page can drift
from the file a benchmark wrote. The test suite checks that the committed page is up to date.

    python benchmarks/results_page.py            # rewrite benchmarks/RESULTS.md
    python benchmarks/results_page.py --check    # exit 1 when the page is stale
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent
RESULTS_DIR = BENCHMARKS / "results"
PAGE = BENCHMARKS / "RESULTS.md"
MAX_LEAVES = 40  # scalar entries shown per file without a "rows" table (the JSON holds them all)

# The figures a reader looks for first: (what, results file, key path, format).
CARD = "preset_card_everyday_selftrained_lite0_448.json"  # the default preset's card
FLICKR_CARD = "preset_card_flickr8k_lite0_448_distilled.json"  # the previous default (Flickr8k only)
ENSEMBLE_CARD = "preset_card_ensemble_two_presets.json"  # the best Flickr8k captioner shipped: two presets as one
HEADLINES = [
    (
        "Default preset (everyday_selftrained_lite0_448) COCO val2014 dev BLEU-4 (beam 3, int8)",
        CARD,
        "rows.COCO val2014 dev.BLEU-4",
        "{:.1f}",
    ),
    ("Default preset COCO val2014 dev CIDEr", CARD, "rows.COCO val2014 dev.CIDEr", "{:.1f}"),
    ("Default preset COCO val2017 (coco_mini) BLEU-4", CARD, "rows.COCO val2017.BLEU-4", "{:.1f}"),
    ("Default preset COCO val2017 (coco_mini) CIDEr", CARD, "rows.COCO val2017.CIDEr", "{:.1f}"),
    ("Default preset Flickr8k dev BLEU-4", CARD, "rows.Flickr8k dev.BLEU-4", "{:.1f}"),
    ("Default preset Flickr8k dev METEOR", CARD, "rows.Flickr8k dev.METEOR", "{:.1f}"),
    ("Default preset Flickr8k dev CIDEr", CARD, "rows.Flickr8k dev.CIDEr", "{:.1f}"),
    ("Default preset grounding lift on COCO (14x14)", CARD, "rows.COCO val2017.lift", "{:.2f}x"),
    ("Default preset attention peak on the named object", CARD, "rows.COCO val2017.peak_on_object", "{:.0%}"),
    (
        "Default preset dev captions repeating a trigram",
        CARD,
        "rows.Flickr8k dev.captions_repeating_a_trigram",
        "{:.1%}",
    ),
    ("Default preset confidence AUROC, Flickr8k dev", CARD, "rows.Flickr8k dev.auroc_confidence", "{:.3f}"),
    ("Default preset confidence AUROC, COCO val2014 dev", CARD, "rows.COCO val2014 dev.auroc_confidence", "{:.3f}"),
    ("Default preset weights (bytes)", "preset_everyday.json", "int8.weights_bytes", "{:,}"),
    ("Previous default (flickr8k_lite0_448_distilled) dev BLEU-4", FLICKR_CARD, "rows.Flickr8k dev.BLEU-4", "{:.1f}"),
    ("Previous default dev CIDEr", FLICKR_CARD, "rows.Flickr8k dev.CIDEr", "{:.1f}"),
    ("Previous default COCO CIDEr (tags off)", FLICKR_CARD, "rows.COCO val2017.CIDEr", "{:.1f}"),
    (
        "Ensemble flickr8k_lite0_448 + flickr8k_lite0 dev BLEU-4 (beam 3)",
        ENSEMBLE_CARD,
        "rows.Flickr8k dev.BLEU-4",
        "{:.1f}",
    ),
    ("Ensemble dev CIDEr", ENSEMBLE_CARD, "rows.Flickr8k dev.CIDEr", "{:.1f}"),
    ("Ensemble COCO CIDEr (tags off)", ENSEMBLE_CARD, "rows.COCO val2017.CIDEr", "{:.1f}"),
    ("flickr8k_lite0 (7x7) dev BLEU-4 (beam 3, int8 weights)", "preset.json", "int8.BLEU-4", "{:.1f}"),
    ("flickr8k_lite0 dev METEOR", "preset.json", "int8.METEOR", "{:.1f}"),
    ("flickr8k_lite0 dev CIDEr", "preset.json", "int8.CIDEr", "{:.1f}"),
    (
        "Training step, default precision (target tokens/s)",
        "train_throughput.json",
        "paper_size.sat_tf default (mixed_bfloat16).tokens_per_second",
        "{:,.0f}",
    ),
    ("Training step, default over the naive decoder", "train_throughput.json", "summary.default_over_naive", "{:.2f}x"),
    (
        "Training step, fraction of the fp32 matmul peak",
        "train_throughput.json",
        "summary.default_fraction_of_peak",
        "{:.0%}",
    ),
    ("Demo wall time (s)", "demo.json", "wall_seconds", "{:.0f}"),
    ("Demo held-out BLEU-4", "demo.json", "BLEU-4", "{:.1f}"),
    ("Demo phrase localization", "demo.json", "phrase_localization", "{:.2f}"),
    (
        "First caption in a fresh process, `sat-tf caption PHOTO`, fast path (s)",
        "cold_caption.json",
        "paths.fast.seconds_median",
        "{:.2f}",
    ),
    ("... its peak memory (MB)", "cold_caption.json", "paths.fast.peak_rss_mb_median", "{:.0f}"),
    (
        "First caption in a fresh process, TensorFlow path (s)",
        "cold_caption.json",
        "paths.tensorflow.seconds_median",
        "{:.1f}",
    ),
    ("... its peak memory (MB)", "cold_caption.json", "paths.tensorflow.peak_rss_mb_median", "{:.0f}"),
    ("... of which a bare `import tensorflow` (s)", "cold_caption.json", "import_tensorflow.seconds_median", "{:.1f}"),
    ("flickr8k_lite0 photo to caption, greedy (ms)", "decode_latency_preset.json", "from_image.greedy_ms", "{:.1f}"),
    ("flickr8k_lite0 photo to caption, beam 3 (ms)", "decode_latency_preset.json", "from_image.beam3_ms", "{:.1f}"),
    (
        "flickr8k_lite0 COCO CIDEr, tags off",
        "novel_objects.json",
        "rows.COCO val2017 (79 photos), tags off.CIDEr",
        "{:.1f}",
    ),
    (
        "flickr8k_lite0 COCO CIDEr, tags auto",
        "novel_objects.json",
        "rows.COCO val2017 (79 photos), tags auto.CIDEr",
        "{:.1f}",
    ),
    ("flickr8k_lite0 grounding lift on COCO (7x7)", "grounding.json", "rows.tags off.lift", "{:.2f}x"),
    ("flickr8k_lite0 attention peak on the named object", "grounding.json", "rows.tags off.peak_on_object", "{:.0%}"),
    ("Serving p99 with 4 huge-PNG clients / alone", "serve_abuse.json", "p99_ratio", "{:.2f}x"),
    ("Serving flood: first 503 after (s)", "serve_abuse.json", "flood.first_503_after_s", "{:.2f}"),
    ("Serving RSS after 2,000 / after 200 requests", "serve_abuse.json", "rss_ratio", "{:.2f}x"),
]


def lookup(data: dict, path: str):
    """The value at a dotted key path; keys may themselves hold dots, so the longest key that
    matches at each level wins."""
    node, rest = data, path
    while rest:
        for key in sorted((k for k in node if rest == k or rest.startswith(k + ".")), key=len, reverse=True):
            node, rest = node[key], rest[len(key) + 1 :]
            break
        else:
            raise KeyError(path)
    return node


def cell(value) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e6 else f"{value:,.0f}"
    if isinstance(value, (list, tuple)):
        return ", ".join(cell(v) for v in value) if all(not isinstance(v, (dict, list)) for v in value) else "…"
    if isinstance(value, dict):
        return "…"
    return str(value).replace("|", "\\|").replace("\n", " ")


def table(rows: dict[str, dict]) -> list[str]:
    columns: list[str] = []
    for row in rows.values():
        columns += [k for k, v in row.items() if k not in columns and not isinstance(v, (dict, list))]
    lines = ["| | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    lines += [
        f"| {cell(name)} | " + " | ".join(cell(row.get(c, "")) for c in columns) + " |" for name, row in rows.items()
    ]
    return lines


def leaves(data, prefix: str = ""):
    """(dotted key, scalar) for every scalar below `data`."""
    if isinstance(data, dict):
        for key, value in data.items():
            yield from leaves(value, f"{prefix}{key}.")
    elif isinstance(data, list) and any(isinstance(v, (dict, list)) for v in data):
        yield prefix.rstrip("."), f"({len(data)} entries)"
    else:
        yield prefix.rstrip("."), data


def file_section(path: Path) -> list[str]:
    data = json.loads(path.read_text(encoding="utf-8"))
    lines = [f"## {path.stem}", ""]
    if not isinstance(data, dict):
        return lines + [f"`{path.name}` holds a {type(data).__name__}.", ""]
    if "command" in data:
        lines.append(f"Command: `{data['command']}`  ")
    lines += [f"Machine: {cell(data.get('machine', 'not recorded'))}  ", f"File: `results/{path.name}`", ""]
    rows = data.get("rows")
    if isinstance(rows, dict) and rows and all(isinstance(r, dict) for r in rows.values()):
        lines += table(rows)
    elif isinstance(rows, list) and rows and all(isinstance(r, dict) for r in rows):
        lines += table({str(index + 1): row for index, row in enumerate(rows)})
    else:
        shown = [(k, v) for k, v in leaves({k: v for k, v in data.items() if k not in ("command", "machine")})]
        lines += ["| key | value |", "|---|---|"]
        lines += [f"| {cell(k)} | {cell(v)} |" for k, v in shown[:MAX_LEAVES]]
        if len(shown) > MAX_LEAVES:
            lines.append(f"| … | {len(shown) - MAX_LEAVES} more in the file |")
    return lines + [""]


def headline_section(results_dir: Path) -> list[str]:
    lines = ["## Headline figures", "", "| figure | value | file |", "|---|---|---|"]
    for label, name, key, form in HEADLINES:
        path = results_dir / name
        if not path.is_file():
            continue
        try:
            value = form.format(lookup(json.loads(path.read_text(encoding="utf-8")), key))
        except (KeyError, TypeError, ValueError):
            continue
        lines.append(f"| {label} | {value} | [`{name}`](results/{name}) `{key}` |")
    return lines + [""]


def render(results_dir: Path = RESULTS_DIR) -> str:
    lines = [
        "# Results",
        "",
        "Every figure below is read from a file in `benchmarks/results/`, written by the benchmark",
        "whose command it records, on the machine it names (CPU model and flags). This page is",
        "generated by `python benchmarks/results_page.py`; do not edit it by hand. What each",
        "benchmark measures, and the studies behind the defaults, are in `docs/benchmarks.md`.",
        "",
        *headline_section(results_dir),
    ]
    for path in sorted(results_dir.glob("*.json")):
        lines += file_section(path)
    return "\n".join(lines).rstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the page differs from what the files give")
    args = parser.parse_args(argv)
    page = render()
    if args.check:
        current = PAGE.read_text(encoding="utf-8") if PAGE.is_file() else ""
        if current != page:
            print(f"{PAGE} is stale: run python benchmarks/results_page.py", file=sys.stderr)
            return 1
        return 0
    PAGE.write_text(page, encoding="utf-8")
    print(f"wrote {PAGE} ({len(page.splitlines())} lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
