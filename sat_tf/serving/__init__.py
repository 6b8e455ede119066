"""Serving layer: a local server with TensorFlow Serving's REST contract for an exported
SavedModel (a runtime, kept apart from the exporters in `sat_tf.export`)."""

from sat_tf.utils.quiet import import_tensorflow_quietly

import_tensorflow_quietly()  # before any module below imports TensorFlow
