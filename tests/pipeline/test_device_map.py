"""A model placed by an explicit accelerate device map gives the same top-k as the unplaced model.

On a GPU session the map splits the layers over cuda:0 and cpu; on this CPU-only machine the same code
path (accelerate placement, scores accumulated and ranked on each tensor's own device, inputs sent to the
embedding's device) is driven with an explicit per-module map onto the CPU.
"""

from __future__ import annotations

import torch

from esa.data import load_corpus, make_windows
from esa.metrics import get_metric
from esa.models import load_model
from esa.models.tiny import build_tiny_model, byte_tokenizer
from esa.pipeline.profile import profile_seed


def _split_map() -> dict[str, str]:
    second = "cuda:0" if torch.cuda.is_available() else "cpu"
    return {"model.embed_tokens": "cpu", "model.layers.0": "cpu", "model.layers.1": second,
            "model.norm": second, "model.rotary_emb": second, "lm_head": second}


def test_explicit_device_map_gives_the_same_topk(tmp_path):
    path = tmp_path / "tiny"
    build_tiny_model("tiny-llama").save_pretrained(path)
    byte_tokenizer().save_pretrained(path)
    plain = load_model(str(path))
    placed = load_model(str(path), device_map=_split_map())
    assert {p.device.type for p in placed.model.parameters()} == {t.split(":")[0] for t in _split_map().values()}
    windows = make_windows(load_corpus("builtin", plain.tokenizer), 32, 4, 2, seed=3)
    metric = get_metric("grad_x_weight")
    a = profile_seed(plain, metric, windows, list(plain.params), seed=3, k=50, mode="global", batch_size=2)
    b = profile_seed(placed, metric, windows, list(placed.params), seed=3, k=50, mode="global", batch_size=2)
    assert a.selection.keys() == b.selection.keys()
    torch.testing.assert_close(b.selection.score.cpu(), a.selection.score, rtol=1e-5, atol=1e-9)
