"""Modeling layer: encoder, attention, decoder and the captioner (imports only `sat_tf.data`)."""

from sat_tf.utils.quiet import import_tensorflow_quietly

import_tensorflow_quietly()  # before any module below imports TensorFlow

from sat_tf.models.attention import BahdanauAttention
from sat_tf.models.captioner import Captioner
from sat_tf.models.decoder import AttentionDecoder, DecoderState, StepOutput
from sat_tf.models.encoder import Encoder

__all__ = ["AttentionDecoder", "BahdanauAttention", "Captioner", "DecoderState", "Encoder", "StepOutput"]
