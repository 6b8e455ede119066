"""sat_tf: "Show, Attend and Tell" image captioning in TensorFlow/Keras.

Layers, each importing only the ones before it in this list (and `sat_tf.errors`, `sat_tf.utils`):
data -> models -> inference -> evaluation -> training -> export / serving -> workflows -> cli / demo.
Training sits above inference and evaluation: self-critical training samples captions with the
decoding loop and rewards them with CIDEr-D.
The image contract and the edge manifest format live in the `sat_tf_edge` package (export/),
below all of them.
"""

__version__ = "0.1.0"

import os as _os

# oneDNN's CPU kernels: TensorFlow turns them on by itself only on CPUs with AVX-512 VNNI/BF16 or
# AMX, yet they run the training step 1.6-2x faster on AVX2-only CPUs too (benchmarks/
# train_throughput.py). This must be set before TensorFlow is imported, so it takes effect when
# sat_tf (or any of its modules) is imported first; a value the user set wins, and
# TF_ENABLE_ONEDNN_OPTS=0 turns them off.
_os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

# Quiet by default: TensorFlow's info lines (XLA service, compiled clusters) are not the user's
# business; warnings and errors still show. `SAT_TF_VERBOSE=1` shows everything, including the
# start-up lines `sat_tf.utils.quiet.import_tensorflow_quietly` otherwise drops.
if _os.environ.get("SAT_TF_VERBOSE", "") in ("", "0"):
    _os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
