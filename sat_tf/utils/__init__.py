"""Small shared helpers that every layer may import (no TensorFlow model code here)."""
