from esa.interpret.selection import SelectedWeight


def test_plant_constant_matches_conftest(planted):
    """test_core names the planted weight by value; it must be the weight conftest plants (a 10.0)."""
    w = SelectedWeight("model.layers.0.mlp.down_proj.weight", (5, 7))
    assert float(dict(planted.model.named_parameters())[w.param].detach()[w.index]) == 10.0
