"""Data layer: records, image reading, tokenizer, tf.data pipeline, synthetic dataset."""

from sat_tf.utils.quiet import import_tensorflow_quietly

import_tensorflow_quietly()  # before any module below imports TensorFlow

from sat_tf.data.images import ImageLoadError, load_image, scan_images
from sat_tf.data.pipeline import CaptionDataError, EncodedCaptions, encode_captions, make_caption_dataset
from sat_tf.data.records import CaptionRecord
from sat_tf.data.tokenizer import CaptionTokenizer

__all__ = [
    "CaptionDataError",
    "CaptionRecord",
    "CaptionTokenizer",
    "EncodedCaptions",
    "ImageLoadError",
    "encode_captions",
    "load_image",
    "make_caption_dataset",
    "scan_images",
]
