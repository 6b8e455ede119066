"""Export layer: SavedModel for serving and TFLite encoder/decoder-step models (imports every layer below)."""

from sat_tf.utils.quiet import import_tensorflow_quietly

import_tensorflow_quietly()  # before any module below imports TensorFlow
