"""sat_tf: "Show, Attend and Tell" image captioning in TensorFlow/Keras.

Layers, each importing only the ones above it in this list:
data -> models -> training -> inference / evaluation -> cli / demo.
"""

__version__ = "0.1.0"
