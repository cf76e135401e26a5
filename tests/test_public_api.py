"""The one-file public API resolves every name it lists, and the README's library example runs."""

import esa


def test_every_public_name_resolves():
    for name in esa.__all__:
        assert getattr(esa, name) is not None, name


def test_readme_library_example_on_a_tiny_model():
    lm = esa.load_model("tiny-llama")
    windows = esa.make_windows(esa.load_corpus("builtin", lm.tokenizer), seq_len=32, n_calib=4, n_eval=2, seed=1)
    profile = esa.profile_seed(lm, esa.get_metric("grad_x_weight"), windows, list(lm.params),
                               seed=1, k=10, mode="global", batch_size=2)
    assert len(profile.selection) == 10
    assert 0 <= profile.stats["global"]["gini"] <= 1
    assert esa.evaluate(lm.model, windows).ppl > 1
