"""Sequence-level knowledge distillation: a teacher's captions as training data for a student.

Kim & Rush (2016) train the student on the teacher's beam-search outputs instead of (or beside)
the human references. Here the teacher is any captioner, typically an ensemble (`--model A B`),
and the student is one model trained on the file this writes with the usual command
(`sat-tf train --captions FILE --init-from STUDENT ...`), so it captions as well as a single
model can learn from the ensemble at a single model's cost.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

from sat_tf.data.sources import DataConfig, load_captions
from sat_tf.errors import ConfigError
from sat_tf.inference.decoding_config import DecodingConfig
from sat_tf.utils.atomic import atomic_path
from sat_tf.workflows.caption import decode
from sat_tf.workflows.evaluate import images_or_features
from sat_tf.workflows.models import load_captioners


def write_distillation_captions(
    teacher_paths: Sequence[str],
    data: DataConfig,
    decoding: DecodingConfig,
    output: str | os.PathLike,
    with_references: bool = False,
    verbose: bool = True,
) -> dict[str, str]:
    """Captions every image of a split with the teacher and writes a `.jsonl` caption file.

    The file lists the images in the split's order, so a feature cache of the split stays valid
    for it; image paths are absolute, so it trains from any folder.

    Args:
        teacher_paths: one model (file, run folder or preset), or several for an ensemble.
        data: the split to caption (reads `data.feature_cache` when set), usually the training split.
        decoding: how the teacher decodes (beam size, n-gram blocking, ...).
        output: the `.jsonl` file to write (atomically).
        with_references: also keep the split's own captions, each image's before the teacher's.

    Returns:
        {image path: the teacher's caption}.

    Example:
        >>> write_distillation_captions(["flickr8k_lite0_448", "flickr8k_lite0"], train_data,
        ...                             DecodingConfig(beam_size=3), "runs/teacher.jsonl")

    Reference:
        Kim & Rush, "Sequence-Level Knowledge Distillation", EMNLP 2016.
    """
    if Path(output).suffix.lower() != ".jsonl":
        raise ConfigError(f"{output}: the distillation captions are written as a .jsonl caption file")
    if data.is_synthetic:
        raise ConfigError("distillation needs a caption file (--captions): generated data has no image files")
    teacher = load_captioners(teacher_paths)
    captions = load_captions(data, teacher.members()[0].encoder.image_size, verbose=verbose).with_photos_only()
    inputs = images_or_features(teacher, captions, data.feature_cache)
    texts = decode(teacher, decoding, **inputs).best().texts
    references = captions.references() if with_references else {}
    with atomic_path(output) as tmp, open(tmp, "w", encoding="utf-8") as file:
        for image_id, path, text in zip(captions.image_ids, captions.image_paths, texts):
            image_path = os.path.abspath(path)
            for caption in [*references.get(image_id, []), text]:
                file.write(json.dumps({"image": image_path, "caption": caption}) + "\n")
    return dict(zip(captions.image_paths, texts))
