"""Pretrained captioners shipped with sat_tf (one folder each); see `sat_tf.models.preset`."""
