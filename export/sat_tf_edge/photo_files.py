"""Which files a captioning run reads: photo paths as given, folders searched for image files, and
list files of paths. Reads no image (the image contract is `sat_tf_edge.images`) and loads no
TensorFlow, so a command can check its inputs before a model loads.

Example:
    >>> find_photos(["holiday/", "cat.jpg"], list_files=["more.txt"])  # doctest: +SKIP
    ['holiday/a.jpg', 'holiday/day2/b.png', 'cat.jpg', '/archive/c.jpg']
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator, Sequence

from sat_tf_edge.images import file_problem

# The file name endings a folder search takes as photos (case-insensitive).
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})


class PhotoListError(ValueError):
    """A list file that cannot be read; the message names it and says why."""


def is_image_name(name: str) -> bool:
    """Whether a file name ends like a photo (`IMAGE_EXTENSIONS`)."""
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def photos_in_folder(folder: str | os.PathLike) -> Iterator[str]:
    """The image files under `folder`, recursively, in a stable order (sorted names, depth first);
    hidden files and folders are skipped."""
    for root, folders, files in os.walk(os.fspath(folder)):
        folders[:] = sorted(f for f in folders if not f.startswith("."))
        for name in sorted(files):
            if is_image_name(name) and not name.startswith("."):
                yield os.path.join(root, name)


def read_photo_list(path: str | os.PathLike) -> list[str]:
    """The paths a list file names, one a line; blank lines and lines starting with '#' are
    skipped, and a relative path is read from the list file's folder.

    Raises:
        PhotoListError: the list file is missing or unreadable.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PhotoListError(f"{path}: cannot read the photo list ({exc.__class__.__name__}: {exc})") from exc
    base = Path(path).parent
    photos = []
    for line in text.splitlines():
        entry = line.strip()
        if entry and not entry.startswith("#"):
            photos.append(entry if os.path.isabs(entry) else str(base / entry))
    return photos


def source_problem(path: str | os.PathLike) -> str | None:
    """Why a photo source named on a command line cannot be used (missing, empty, a folder without
    image files), or None; a folder is searched only until its first image file."""
    if os.path.isdir(path):
        return None if next(photos_in_folder(path), None) else "a folder with no image files"
    return file_problem(path)


def find_photos(sources: Sequence[str], list_files: Sequence[str] = ()) -> list[str]:
    """Every photo `sources` name (a file as given, a folder's image files in `photos_in_folder`
    order), then every path of the `list_files`, each once, in that order."""
    found: dict[str, None] = {}
    for source in sources:
        for photo in photos_in_folder(source) if os.path.isdir(source) else [str(source)]:
            found.setdefault(photo)
    for list_file in list_files:
        for photo in read_photo_list(list_file):
            found.setdefault(photo)
    return list(found)
