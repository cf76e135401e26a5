import torch

from esa.interpret import SelectedWeight, check_selection, from_weight_set
from esa.ranking import top_k


def test_from_weight_set_keeps_order_index_and_score(planted):
    scores = {n: torch.zeros(i.shape) for n, i in planted.params.items()}
    scores["model.layers.1.mlp.up_proj.weight"][40, 3] = 5.0
    scores["model.norm.weight"][7] = 2.0
    sel = from_weight_set(planted, top_k(scores, 2, mode="global"))
    assert [(w.param, w.index, w.score) for w in sel] == [
        ("model.layers.1.mlp.up_proj.weight", (40, 3), 5.0), ("model.norm.weight", (7,), 2.0)]


def test_check_selection_accepts_pairs_dicts_and_strings_and_drops_duplicates(planted):
    down = "model.layers.0.mlp.down_proj.weight"
    sel = check_selection(planted, [(down, (1, 2)), {"param": down, "index": "1,2", "score": 3.0},
                                    SelectedWeight(down, (2, 1), 1.0, "x")])
    assert [(w.index, w.source) for w in sel] == [((1, 2), "user"), ((2, 1), "x")]
