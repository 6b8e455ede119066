"""sat_tf: "Show, Attend and Tell" image captioning in TensorFlow/Keras.

Layers, each importing only the ones before it in this list (and `sat_tf.errors`, `sat_tf.utils`):
data -> models -> training -> inference -> evaluation -> export / serving -> workflows -> cli / demo.
The image contract and the edge manifest format live in the `sat_tf_edge` package (export/),
below all of them.
"""

__version__ = "0.1.0"
