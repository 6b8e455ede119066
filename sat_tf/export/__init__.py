"""Export layer: SavedModel for serving and TFLite encoder/decoder-step models (imports every layer below)."""
