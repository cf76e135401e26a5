"""Loading causal LMs and describing where each of their parameters sits."""

from esa.models.aliases import BUNDLED_ALIASES
from esa.models.layout import describe_parameters, find_decoder_blocks, is_tied
from esa.models.gguf import cache_dir
from esa.models.loader import DTYPES, input_device, load_model, resolve_device
from esa.models.types import COMPONENTS, LoadedModel, ParamInfo

__all__ = [
    "BUNDLED_ALIASES",
    "COMPONENTS",
    "DTYPES",
    "LoadedModel",
    "ParamInfo",
    "cache_dir",
    "describe_parameters",
    "find_decoder_blocks",
    "input_device",
    "is_tied",
    "load_model",
    "resolve_device",
]
