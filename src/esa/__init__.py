"""ESA: find the few weights of a transformer language model that matter most, and prove it."""

__version__ = "0.1.0"
