"""sat_tf: "Show, Attend and Tell" image captioning in TensorFlow/Keras.

Layers, each importing only the ones before it in this list (and `sat_tf.errors`, `sat_tf.utils`):
data -> models -> inference -> evaluation -> training -> export / serving -> workflows -> cli / demo.
Training sits above inference and evaluation: self-critical training samples captions with the
decoding loop and rewards them with CIDEr-D.
The image contract and the edge manifest format live in the `sat_tf_edge` package (export/),
below all of them.
"""

__version__ = "0.1.0"
