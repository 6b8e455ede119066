"""Draws the README's picture: the shipped preset's caption of a public-domain photo
(scikit-image's `chelsea`, a cat), with where it looked for each word.

    python -m benchmarks.deployment.readme_figure --output docs/images/caption_attention.png
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from PIL import Image
from skimage import data

from sat_tf.cli import DEFAULT_PRESET
from sat_tf.inference.attention_plot import plot_attention
from sat_tf.workflows import caption_files, load_for_captioning
from sat_tf_edge.confidence import confidence_text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--output",
        default="runs/benchmarks/caption_attention.png",
        help="pass docs/images/caption_attention.png to update the README figure",
    )
    args = parser.parse_args()
    loaded = load_for_captioning([DEFAULT_PRESET], as_caption_command=True)
    with tempfile.TemporaryDirectory() as folder:
        photo_path = Path(folder) / "chelsea.jpg"
        Image.fromarray(data.chelsea()).save(photo_path, quality=90)
        captioned = caption_files(loaded.model, [str(photo_path)], loaded.decoding, calibration=loaded.calibration)
        record = captioned.records()[0]
        best = captioned.candidates.best()
        title = f"{record['caption']}  {confidence_text(record['confidence'], record['not_sure'])}"
        plot_attention(
            data.chelsea(),
            best.words(0),
            best.alphas[0],
            loaded.model.feature_grid,
            args.output,
            columns=5,
            title=title,
        )
    print(f"{args.output}: {title}")


if __name__ == "__main__":
    main()
