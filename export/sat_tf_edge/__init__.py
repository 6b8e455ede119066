"""sat_tf_edge: caption images with sat_tf's exported TFLite models, without TensorFlow.

Needs only ai-edge-litert, numpy and Pillow. Also home of the image contract
(`sat_tf_edge.images`), the manifest format (`sat_tf_edge.manifest`) and the caption confidence
(`sat_tf_edge.confidence`) that sat_tf itself uses, so the library, the server and devices read
images and exports, and doubt captions, the same way.
"""

from sat_tf_edge.images import ImageDecodeError, load_image
from sat_tf_edge.manifest import EdgeManifest, ManifestError
from sat_tf_edge.runtime import EdgeCaption, EdgeCaptioner

__all__ = ["EdgeCaption", "EdgeCaptioner", "EdgeManifest", "ImageDecodeError", "ManifestError", "load_image"]
__version__ = "0.1.0"
