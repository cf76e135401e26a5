"""One real `esa run` on tiny-llama (two seeds, stability, zero-perturbation, --save-plots), shared by
the report tests; each test copies it before changing anything."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from esa.pipeline.config import DataOptions, ModelOptions, OutputOptions, PerturbOptions, RunConfig
from esa.pipeline.run import run_command

# A few paragraphs are plenty for 16-token windows and keep tokenizing instant.
CORPUS = "\n\n".join(
    f"Paragraph {i}: the quick brown fox jumps over the lazy dog; <tags> | pipes & ampersands stay literal. "
    "Sensitivity analysis ranks the weights of a model by how much the loss depends on them." for i in range(40)
)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tiny_run")
    corpus = root / "corpus.txt"
    corpus.write_text(CORPUS, encoding="utf-8")
    cfg = RunConfig(
        model=ModelOptions(model="tiny-llama", device="cpu"),
        data=DataOptions(dataset=str(corpus), seq_len=16, max_samples=2, eval_samples=2, batch_size=2, seeds=[1, 2]),
        output=OutputOptions(out_dir=str(root / "run"), save_plots=True, quiet=True),
        metric="grad_x_weight", mode="per_layer", topk=3, stability_check=True,
        perturb=PerturbOptions(perturb="zero", trials=2),
    )
    run_command(cfg)
    return root / "run"


@pytest.fixture
def run_copy(tiny_run: Path, tmp_path: Path) -> Path:
    """A private copy of the run directory (plots included) that a test may change."""
    return Path(shutil.copytree(tiny_run, tmp_path / "run"))


@pytest.fixture(scope="session")
def tiny_png(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from matplotlib.figure import Figure

    path = tmp_path_factory.mktemp("png") / "tiny.png"
    fig = Figure(figsize=(1, 1))
    fig.add_subplot().plot([0, 1])
    fig.savefig(path, format="png")
    return path
