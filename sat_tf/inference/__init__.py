"""Inference layer: one decoding loop with greedy, beam and sampling strategies, ensembles,
feature extraction and attention plots (imports data and models)."""

from sat_tf.utils.quiet import import_tensorflow_quietly

import_tensorflow_quietly()  # before any module below imports TensorFlow

from sat_tf.inference.beam_sampler import BeamSampler
from sat_tf.inference.constrained_beam_sampler import ConstrainedBeamSampler
from sat_tf.inference.ensemble import CaptionerEnsemble
from sat_tf.inference.generate import compiled_decoder, generate_captions
from sat_tf.inference.greedy_sampler import GreedySampler
from sat_tf.inference.random_sampler import RandomSampler
from sat_tf.inference.results import CaptionCandidates, DecodedCaptions
from sat_tf.inference.sampler import Sampler

__all__ = [
    "BeamSampler",
    "CaptionCandidates",
    "CaptionerEnsemble",
    "ConstrainedBeamSampler",
    "DecodedCaptions",
    "GreedySampler",
    "RandomSampler",
    "Sampler",
    "compiled_decoder",
    "generate_captions",
]
