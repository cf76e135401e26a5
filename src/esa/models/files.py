"""Check model files before transformers reads them, so a damaged file is named in one line.

transformers reports a cut safetensors file as a Rust deserializer error, a shape that disagrees with
config.json as a multi-line load report plus a RuntimeError, and a refused pickle as a page of advice.
These checks read headers only (a few KB per file; the meta-device model costs no memory), so they run
on every load.
"""

from __future__ import annotations

import json
import struct
import zipfile
from pathlib import Path
from typing import Any

import torch

from esa.errors import EsaError

WEIGHT_PATTERNS = ("*.safetensors", "*.bin", "*.pt", "*.pth", "*.gguf")
_MAX_HEADER = 100 * 2**20  # the safetensors format's own limit on the JSON header
_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
                "U16": 2, "U32": 4, "U64": 8, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}
_REDOWNLOAD = "re-download or re-save the model"


def damaged(path: Path, why: str) -> EsaError:
    return EsaError(f"model file {path} is damaged ({why}); {_REDOWNLOAD}")


def safetensors_header(path: Path) -> dict[str, Any]:
    """The tensor table of a safetensors file, after checking it covers the file exactly."""
    size = path.stat().st_size
    if size < 8:
        raise damaged(path, "empty" if size == 0 else f"only {size} bytes")
    with path.open("rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        if n > min(size - 8, _MAX_HEADER):
            raise damaged(path, f"header length {n} is impossible for a file of {size} bytes")
        try:
            header = json.loads(f.read(n).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise damaged(path, "its header is not valid JSON") from None
    if not isinstance(header, dict):
        raise damaged(path, "its header is not a table of tensors")
    tensors = {k: v for k, v in header.items() if k != "__metadata__"}
    data_len, end_max = size - 8 - n, 0
    for name, info in tensors.items():
        try:
            begin, end = (int(x) for x in info["data_offsets"])
            count = 1
            for dim in info["shape"]:
                count *= int(dim)
            width = _DTYPE_BYTES.get(info["dtype"])
        except (KeyError, TypeError, ValueError):
            raise damaged(path, f"tensor {name} has a malformed entry") from None
        if end > data_len:
            raise damaged(path, f"cut short: tensor {name} ends at byte {end} of {data_len} data bytes")
        if width is not None and end - begin != count * width:
            raise damaged(path, f"tensor {name} holds {end - begin} bytes for shape {info['shape']}")
        end_max = max(end_max, end)
    if end_max != data_len:
        raise damaged(path, f"{data_len - end_max} bytes after the last tensor")
    return tensors


def check_gguf(path: Path) -> None:
    """A GGUF whose header parses and whose tensors all lie inside the file."""
    from gguf import GGUFReader

    size = path.stat().st_size
    if size < 24:  # magic, version, two counts
        raise damaged(path, "empty" if size == 0 else f"only {size} bytes, not a GGUF file")
    try:
        reader = GGUFReader(path)
    except Exception as exc:  # the reader raises ValueError, IndexError, struct errors... on cut files
        raise damaged(path, f"not a readable GGUF file: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    for tensor in reader.tensors:
        if int(tensor.data_offset) + int(tensor.n_bytes) > size:
            raise damaged(path, f"cut short: tensor {tensor.name} ends past the end of the file")


def check_pickle(path: Path) -> None:
    """A torch.save checkpoint that loads with weights_only=True (ESA never runs pickled code)."""
    if not zipfile.is_zipfile(path):
        if path.stat().st_size == 0:
            raise damaged(path, "empty")
        return  # a legacy (pre-1.6) checkpoint: transformers' own loader reports what it finds
    try:
        torch.load(path, map_location="meta", weights_only=True, mmap=True)
    except Exception as exc:
        why = "it contains objects other than tensors, which ESA does not unpickle" if "weights_only" in str(exc).lower() \
            else f"torch cannot read it: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        raise EsaError(f"model file {path} cannot be loaded safely ({why}); convert it to safetensors from a trusted copy") from None


def weight_files(directory: Path) -> list[Path]:
    return sorted(p for pattern in WEIGHT_PATTERNS for p in directory.glob(pattern) if p.is_file())


def check_model_dir(directory: Path, trust_remote_code: bool) -> None:
    """A local model directory: config.json readable, weights present and undamaged, shapes matching."""
    config_path = directory / "config.json"
    if not config_path.is_file():
        raise EsaError(f"model directory {directory} has no config.json; give a directory written by save_pretrained")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EsaError(f"{config_path} is not valid JSON ({exc}); {_REDOWNLOAD}") from None
    if not isinstance(config, dict):
        raise EsaError(f"{config_path} is not a JSON object; {_REDOWNLOAD}")
    files = weight_files(directory)
    if not files:
        raise EsaError(f"model directory {directory} has config.json but no weight files "
                       f"({', '.join(WEIGHT_PATTERNS[:2])}, {WEIGHT_PATTERNS[-1]}); copy the weights there")
    check_custom_code(str(directory), config, trust_remote_code)
    check_model_type(config_path, config)
    tables = {}
    for path in files:
        if path.suffix == ".safetensors":
            tables[path] = safetensors_header(path)
        elif path.suffix == ".gguf":
            check_gguf(path)
        else:
            check_pickle(path)
    if tables and not config.get("auto_map"):
        check_shapes(directory, tables)


def check_custom_code(spec: str, config: dict[str, Any], trust_remote_code: bool) -> None:
    """A model whose architecture exists only as Python code in its repository needs explicit consent."""
    from transformers import CONFIG_MAPPING

    if config.get("auto_map") and config.get("model_type") not in CONFIG_MAPPING and not trust_remote_code:
        raise EsaError(f"{spec} needs Python code shipped with the model (auto_map in config.json); "
                       "pass --trust-remote-code only if you trust its authors, since that code runs with your permissions")


def check_model_type(config_path: Path, config: dict[str, Any]) -> None:
    from transformers import CONFIG_MAPPING

    model_type = config.get("model_type")
    if not config.get("auto_map") and model_type not in CONFIG_MAPPING:
        raise EsaError(f"{config_path} names model_type {model_type!r}, which this transformers version does not know; "
                       "upgrade transformers or check the file")


def check_shapes(directory: Path, tables: dict[Path, dict[str, Any]]) -> None:
    """Every checkpoint tensor whose name the config's model has must have that parameter's shape."""
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        config = AutoConfig.from_pretrained(directory)
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config)
    except (ValueError, KeyError, TypeError, OSError) as exc:
        raise EsaError(f"{directory / 'config.json'} does not describe a model transformers can build "
                       f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); check the model_type and sizes") from None
    expected = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    for path, tensors in tables.items():
        for name, info in tensors.items():
            want = expected.get(name)
            if want is not None and tuple(info["shape"]) != want:
                raise EsaError(f"model file {path}: tensor {name} has shape {tuple(info['shape'])} but config.json "
                               f"implies {want}; the weights and config.json are from different models")
