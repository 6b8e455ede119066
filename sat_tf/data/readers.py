"""Readers that turn caption files into `CaptionRecord`s, with errors that name file and line.

Supported here: JSON Lines (`{"image": "path", "caption": "text"}` per line) and CSV with an
`image,caption` header. Image paths are resolved against `image_dir` (default: the file's folder).
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

from sat_tf.data.records import CaptionRecord


class CaptionFileError(ValueError):
    """A caption file is malformed; the message names the file and line."""


def _record(image: object, caption: object, image_dir: Path, where: str) -> CaptionRecord:
    if not isinstance(image, str) or not image.strip():
        raise CaptionFileError(f"{where}: field 'image' must be a non-empty string")
    if not isinstance(caption, str):
        raise CaptionFileError(f"{where}: field 'caption' must be a string")
    image_path = image if os.path.isabs(image) else str(image_dir / image)
    return CaptionRecord(image_id=image, caption=caption, image_path=image_path, source=where)


def _read_jsonl(path: Path, text: str, image_dir: Path) -> list[CaptionRecord]:
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            item = json.loads(line)
        except ValueError as exc:
            raise CaptionFileError(f"{where}: invalid JSON ({exc.args[0]})") from None
        if not isinstance(item, dict):
            raise CaptionFileError(f"{where}: expected a JSON object with 'image' and 'caption'")
        missing = [key for key in ("image", "caption") if key not in item]
        if missing:
            raise CaptionFileError(f"{where}: missing field(s) {', '.join(missing)}")
        records.append(_record(item["image"], item["caption"], image_dir, where))
    return records


def _read_csv(path: Path, text: str, image_dir: Path) -> list[CaptionRecord]:
    reader = csv.DictReader(text.splitlines())
    if reader.fieldnames is None or not {"image", "caption"} <= set(reader.fieldnames):
        raise CaptionFileError(f"{path}:1: the CSV header must name the columns 'image' and 'caption'")
    records = []
    for row in reader:
        where = f"{path}:{reader.line_num}"
        if row.get("image") is None or row.get("caption") is None:
            raise CaptionFileError(f"{where}: row has fewer columns than the header")
        records.append(_record(row["image"], row["caption"], image_dir, where))
    return records


def read_caption_file(path: str | os.PathLike, image_dir: str | os.PathLike | None = None) -> list[CaptionRecord]:
    """Reads a `.jsonl` or `.csv` caption file.

    Raises:
        CaptionFileError: unreadable file, wrong encoding, malformed line, missing field, no records.
    """
    path = Path(path)
    if path.suffix.lower() not in (".jsonl", ".csv"):
        raise CaptionFileError(f"{path}: unsupported caption file type; use .jsonl or .csv")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CaptionFileError(f"{path}: caption file not found") from None
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise CaptionFileError(f"{path}:{line}: not valid UTF-8 text") from None
    except OSError as exc:
        raise CaptionFileError(f"{path}: cannot read ({exc.strerror})") from None
    image_dir = Path(image_dir) if image_dir is not None else path.parent
    reader = _read_jsonl if path.suffix.lower() == ".jsonl" else _read_csv
    records = reader(path, text, image_dir)
    if not records:
        raise CaptionFileError(f"{path}: no caption records")
    return records


def index_images(records: list[CaptionRecord]) -> tuple[list[str], list[int]]:
    """Unique image paths (first-seen order) and, per record, the index of its image."""
    paths: dict[str, int] = {}
    indices = [paths.setdefault(r.image_path, len(paths)) for r in records]
    return list(paths), indices
