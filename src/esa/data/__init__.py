"""Corpora and the token windows every ESA number is computed on."""

from esa.data.corpus import Corpus, load_corpus
from esa.data.protocols import EVAL_PROTOCOLS, full_windows, make_protocol_windows
from esa.data.sampling import make_windows
from esa.data.windows import TEXT_MEASURES_RULE, WindowSet

__all__ = ["EVAL_PROTOCOLS", "TEXT_MEASURES_RULE", "Corpus", "WindowSet", "full_windows", "load_corpus",
           "make_protocol_windows", "make_windows"]
