"""Readers that turn caption files into `CaptionRecord`s, with errors that name file and line.

Formats: JSON Lines (`{"image": "path", "caption": "text"}` per line) and CSV with an
`image,caption` header (`read_caption_file`); the Flickr8k/Flickr30k token file with split lists
(`read_flickr_tokens`); Karpathy's split JSON (`read_karpathy_split`); COCO captions JSON
(`read_coco_captions`); a teacher's captions of photos without captions, above a confidence
(`read_pseudo_captions`). All produce the same records: one caption of one image each.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

from sat_tf.data.records import CaptionRecord
from sat_tf.errors import SatTfError


class CaptionFileError(SatTfError, ValueError):
    """A caption file is malformed; the message names the file and line."""


def _record(image: object, caption: object, image_dir: Path, where: str) -> CaptionRecord:
    if not isinstance(image, str) or not image.strip():
        raise CaptionFileError(f"{where}: field 'image' must be a non-empty string")
    if not isinstance(caption, str):
        raise CaptionFileError(f"{where}: field 'caption' must be a string")
    image_path = image if os.path.isabs(image) else str(image_dir / image)
    return CaptionRecord(image_id=image, caption=caption, image_path=image_path, source=where)


def _jsonl_objects(path: Path, text: str, fields: str):
    """(where, object) per non-blank line of a JSON Lines file; a line that is not a JSON object
    raises naming it (and the `fields` it should have)."""
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            item = json.loads(line)
        except ValueError as exc:
            raise CaptionFileError(f"{where}: invalid JSON ({exc.args[0]})") from None
        if not isinstance(item, dict):
            raise CaptionFileError(f"{where}: expected a JSON object with {fields}")
        yield where, item


def _read_jsonl(path: Path, text: str, image_dir: Path) -> list[CaptionRecord]:
    records = []
    for where, item in _jsonl_objects(path, text, "'image' and 'caption'"):
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
    text = _read_text(path)
    image_dir = Path(image_dir) if image_dir is not None else path.parent
    reader = _read_jsonl if path.suffix.lower() == ".jsonl" else _read_csv
    records = reader(path, text, image_dir)
    if not records:
        raise CaptionFileError(f"{path}: no caption records")
    return records


def index_images(records: list[CaptionRecord]) -> tuple[list[str], list[int]]:
    """Unique image paths (first-seen order) and, per record, the index of its image."""
    paths: dict[str, int] = {}
    indices = [paths.setdefault(_image_path(r), len(paths)) for r in records]
    return list(paths), indices


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CaptionFileError(f"{path}: file not found") from None
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise CaptionFileError(f"{path}:{line}: not valid UTF-8 text") from None
    except OSError as exc:
        raise CaptionFileError(f"{path}: cannot read ({exc.strerror})") from None


def _read_json(path: Path):
    try:
        return json.loads(_read_text(path))
    except ValueError as exc:
        raise CaptionFileError(f"{path}: invalid JSON ({exc})") from None


def read_split_list(path: str | os.PathLike) -> list[str]:
    """Image names, one per line (Flickr `Flickr_8k.trainImages.txt` style)."""
    return [line.strip() for line in _read_text(Path(path)).splitlines() if line.strip()]


def read_flickr_tokens(
    token_path: str | os.PathLike,
    split_path: str | os.PathLike | None = None,
    image_dir: str | os.PathLike | None = None,
) -> list[CaptionRecord]:
    """Flickr8k/Flickr30k `*.token.txt` (`<image>#<k>\\t<caption>` per line), optionally limited to
    the images of a split list. Images are looked up in `image_dir` (default: beside the file)."""
    token_path = Path(token_path)
    image_dir = Path(image_dir) if image_dir is not None else token_path.parent / "images"
    records = []
    for number, line in enumerate(_read_text(token_path).splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{token_path}:{number}"
        name, tab, caption = line.partition("\t")
        image, hash_mark, index = name.partition("#")
        if not tab or not hash_mark or not image or not index.isdigit():
            raise CaptionFileError(f"{where}: expected '<image>#<k><TAB><caption>'")
        records.append(_record(image, caption, image_dir, where))
    if split_path is not None:
        records = _in_split(records, split_path, token_path)
    if not records:
        raise CaptionFileError(f"{token_path}: no caption records")
    return records


KARPATHY_SPLITS = ("train", "val", "test", "restval")


def read_karpathy_split(
    path: str | os.PathLike, split: str, image_root: str | os.PathLike, include_restval: bool = True
) -> list[CaptionRecord]:
    """Karpathy's `dataset_{flickr8k,flickr30k,coco}.json`. With `split="train"` and
    `include_restval`, COCO's "restval" images join the training set, as in Karpathy's recipe.
    Image paths are `image_root/[filepath/]filename`."""
    path = Path(path)
    if split not in KARPATHY_SPLITS:
        raise ValueError(f"split must be one of {KARPATHY_SPLITS}, got '{split}'")
    payload = _read_json(path)
    images = payload.get("images") if isinstance(payload, dict) else None
    if not isinstance(images, list):
        raise CaptionFileError(f"{path}: field 'images' must be a list")
    wanted = {split, "restval"} if split == "train" and include_restval else {split}
    records = []
    for position, image in enumerate(images):
        where = f"{path}: images[{position}]"
        if not isinstance(image, dict):
            raise CaptionFileError(f"{where}: must be an object")
        for key in ("filename", "split", "sentences"):
            if key not in image:
                raise CaptionFileError(f"{where}: missing field '{key}'")
        for key, kind in (("filename", str), ("split", str), ("sentences", list), ("filepath", str)):
            if key in image and not isinstance(image[key], kind):
                raise CaptionFileError(f"{where}: field '{key}' must be a {kind.__name__}")
        if image["split"] not in wanted:
            continue
        relative = os.path.join(image.get("filepath", ""), image["filename"])
        for k, sentence in enumerate(image["sentences"]):
            raw = sentence.get("raw") if isinstance(sentence, dict) else None
            if not isinstance(raw, str):
                raise CaptionFileError(f"{where}.sentences[{k}]: missing string field 'raw'")
            records.append(_record(relative, raw, Path(image_root), f"{where}.sentences[{k}]"))
    if not records:
        raise CaptionFileError(f"{path}: no images in split '{split}'")
    return records


def read_coco_captions(
    path: str | os.PathLike, image_dir: str | os.PathLike, split_path: str | os.PathLike | None = None
) -> list[CaptionRecord]:
    """COCO captions JSON (`captions_train2014.json` style: `images` and `annotations`), optionally
    limited to the images of a split list (file names, as `train_images.txt` lists them)."""
    path = Path(path)
    payload = _read_json(path)
    if not isinstance(payload, dict):
        raise CaptionFileError(f"{path}: expected a JSON object with 'images' and 'annotations'")
    for key in ("images", "annotations"):
        if not isinstance(payload.get(key), list):
            raise CaptionFileError(f"{path}: field '{key}' must be a list")
    files: dict[object, str] = {}
    for position, image in enumerate(payload["images"]):
        if (
            not isinstance(image, dict)
            or not isinstance(image.get("id"), (int, str))
            or not isinstance(image.get("file_name"), str)
        ):
            raise CaptionFileError(
                f"{path}: images[{position}] needs an integer or string 'id' and a string 'file_name'"
            )
        files[image["id"]] = image["file_name"]
    records = []
    for position, annotation in enumerate(payload["annotations"]):
        where = f"{path}: annotations[{position}]"
        if not isinstance(annotation, dict) or "image_id" not in annotation or "caption" not in annotation:
            raise CaptionFileError(f"{where}: needs 'image_id' and 'caption'")
        if not isinstance(annotation["image_id"], (int, str)) or annotation["image_id"] not in files:
            raise CaptionFileError(f"{where}: image_id {annotation['image_id']!r} is not in 'images'")
        records.append(_record(files[annotation["image_id"]], annotation["caption"], Path(image_dir), where))
    if split_path is not None:
        records = _in_split(records, split_path, path)
    if not records:
        raise CaptionFileError(f"{path}: no annotations")
    return records


def read_text_captions(path: str | os.PathLike) -> list[CaptionRecord]:
    """Captions without photos (a language-only source): a `.jsonl` file with a string field
    'caption' per line (other fields, such as COCO's `coco_id`, are ignored), or a `.txt` file
    with one caption per line. Records have no image path; their image id names the line.

    Raises:
        CaptionFileError: unreadable file, malformed line, missing or non-string caption, no records.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".jsonl", ".txt"):
        raise CaptionFileError(f"{path}: unsupported text-only caption file; use .jsonl or .txt")
    records = []
    for number, line in enumerate(_read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        caption: object = line.strip()
        if suffix == ".jsonl":
            try:
                item = json.loads(line)
            except ValueError as exc:
                raise CaptionFileError(f"{where}: invalid JSON ({exc.args[0]})") from None
            caption = item.get("caption") if isinstance(item, dict) else None
            if not isinstance(caption, str):
                raise CaptionFileError(f"{where}: needs a string field 'caption'")
        records.append(CaptionRecord(image_id=where, caption=str(caption), source=where))
    if not records:
        raise CaptionFileError(f"{path}: no captions")
    return records


def read_pseudo_captions(
    path: str | os.PathLike, min_confidence: float, image_dir: str | os.PathLike | None = None
) -> list[CaptionRecord]:
    """A teacher's captions of photos without captions, as `sat-tf caption --output FILE.jsonl`
    writes them (one record per photo: 'image', 'caption', 'confidence'), kept where the teacher
    was at least `min_confidence` sure (self-training: Xie et al. 2020, "Self-training with Noisy
    Student"). Records of photos the teacher could not read (an 'error' field) are left out.

    Raises:
        CaptionFileError: unreadable file, malformed line, a record without a numeric
            'confidence', or no caption left above the threshold (the message says how many were read).
    """
    path = Path(path)
    if path.suffix.lower() != ".jsonl":
        raise CaptionFileError(f"{path}: pseudo-captions are read from the .jsonl `sat-tf caption --output` writes")
    root = Path(image_dir) if image_dir is not None else path.parent
    records, read = [], 0
    for where, item in _jsonl_objects(path, _read_text(path), "'image', 'caption' and 'confidence'"):
        if "error" in item:
            continue
        confidence = item.get("confidence")
        if isinstance(confidence, bool) or not isinstance(confidence, (int, float)):
            raise CaptionFileError(f"{where}: field 'confidence' must be a number (the file `sat-tf caption` writes)")
        read += 1
        if confidence >= min_confidence:
            records.append(_record(item.get("image"), item.get("caption"), root, where))
    if not records:
        raise CaptionFileError(f"{path}: none of its {read} captions has a confidence of at least {min_confidence}")
    return records


def _in_split(records: list[CaptionRecord], split_path: str | os.PathLike, path: Path) -> list[CaptionRecord]:
    """The records whose image (as the caption file names it, or its file name alone) is in the
    split list; every image of the list must have a caption. The one split-list filter of every
    caption format."""
    wanted = set(read_split_list(split_path))
    kept = [r for r in records if r.image_id in wanted or os.path.basename(r.image_id) in wanted]
    found = {r.image_id for r in kept} | {os.path.basename(r.image_id) for r in kept}
    absent = sorted(wanted - found)
    if absent:
        raise CaptionFileError(
            f"{split_path}: {len(absent)} image(s) have no caption in {path}, e.g. {', '.join(absent[:3])}"
        )
    return kept


def missing_image_files(records: list[CaptionRecord]) -> list[str]:
    """Image paths of `records` that do not exist (each listed once)."""
    return [p for p in dict.fromkeys(_image_path(r) for r in records) if not os.path.isfile(p)]


def _image_path(record: CaptionRecord) -> str:
    if record.image_path is None:  # records read from caption files always have one
        raise ValueError(f"caption record of image {record.image_id!r} has no image path")
    return record.image_path


def require_image_files(records: list[CaptionRecord]) -> None:
    """Raises one error counting the missing image files and naming the first few."""
    missing = missing_image_files(records)
    if missing:
        raise CaptionFileError(f"{len(missing)} image file(s) missing, e.g. {', '.join(missing[:3])}")


def read_captions(
    path: str | os.PathLike,
    image_dir: str | os.PathLike | None = None,
    split_list: str | os.PathLike | None = None,
    split: str = "train",
) -> list[CaptionRecord]:
    """Reads any supported caption source, chosen by its form:

    - `.jsonl` / `.csv`: `read_caption_file` (`split_list` limits it to a split);
    - `.txt`: a Flickr token file (`split_list` limits it to a split);
    - `.json` with `annotations`: COCO captions (`split_list` limits it to a split); with
      `images[].sentences`: Karpathy's split file (`split` picks train/val/test; train includes restval).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".csv"):
        records = read_caption_file(path, image_dir)
        return records if split_list is None else _in_split(records, split_list, path)
    if suffix == ".txt":
        return read_flickr_tokens(path, split_list, image_dir)
    if suffix == ".json":
        payload = _read_json(path)
        root = Path(image_dir) if image_dir is not None else path.parent
        if isinstance(payload, dict) and "annotations" in payload:
            return read_coco_captions(path, root, split_list)
        if isinstance(payload, dict) and "images" in payload:
            if split_list is not None:
                raise CaptionFileError(
                    f"{split_list}: a Karpathy split file has its own splits; use 'split', not a split list"
                )
            return read_karpathy_split(path, split, root)
        raise CaptionFileError(f"{path}: neither COCO captions ('annotations') nor a Karpathy split ('images')")
    raise CaptionFileError(f"{path}: unsupported caption source; use .jsonl, .csv, a Flickr .txt token file or .json")
