"""Corpora and the token windows every ESA number is computed on."""

from esa.data.corpus import Corpus, load_corpus
from esa.data.sampling import make_windows
from esa.data.windows import WindowSet

__all__ = ["Corpus", "WindowSet", "load_corpus", "make_windows"]
