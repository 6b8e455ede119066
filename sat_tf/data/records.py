"""Caption records: one caption of one image per record; several records may share an image."""

from __future__ import annotations

import dataclasses
from typing import Sequence

# The image row of a caption that has no photo (a text-only source), in caption data's image_index.
NO_PHOTO = -1


@dataclasses.dataclass(frozen=True)
class CaptionRecord:
    """One (image, caption) pair.

    Args:
        image_id: identifier of the image (several records may share it).
        caption: the caption text.
        image_path: path of the image file, for datasets on disk.
        image_index: row of the image in an in-memory image array, for generated datasets.
        source: where the record came from (for example "captions.jsonl:17"), used in error messages.
    """

    image_id: str
    caption: str
    image_path: str | None = None
    image_index: int | None = None
    source: str = ""

    def where(self) -> str:
        return self.source or self.image_path or self.image_id


def group_references(records: Sequence[CaptionRecord], keys: Sequence[str]) -> dict[str, list[str]]:
    """Reference captions per image: `keys[i]` names the image of `records[i]`."""
    references: dict[str, list[str]] = {}
    for record, key in zip(records, keys):
        references.setdefault(key, []).append(record.caption)
    return references
