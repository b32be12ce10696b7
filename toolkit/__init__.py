"""Sequential music recommendation that learns from skips."""

__version__ = "0.1.0"
