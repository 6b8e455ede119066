"""Serving layer: a local server with TensorFlow Serving's REST contract for an exported
SavedModel (a runtime, kept apart from the exporters in `sat_tf.export`)."""
