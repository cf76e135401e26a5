"""apply_perturbation: the perturbed values land exactly at the selection, and the exit restores
every bit, whatever the perturbation, dtype, values or way out of the with-block."""

from __future__ import annotations

import pytest
import torch

import esa.perturb.apply as apply_module
from esa.errors import EsaError
from esa.models.tiny import build_tiny_model
from esa.perturb import Perturbation, apply_perturbation, trial_generator
from esa.perturb.base import int_view_dtype
from esa.ranking import top_k

DTYPES = (torch.float32, torch.bfloat16, torch.float16)
CASES = [
    ("sign_flip", {}),
    ("sign_flip", {"scale": 2.5}),
    ("zero", {}),
    ("gauss_noise", {"scale": 0.5}),
    ("gauss_noise", {"scale": 0.5, "noise_ref": "std"}),
    ("bit_flip", {"prob": 0.3}),
    ("bit_flip", {"prob": 1.0}),
    ("bit_flip", {"bit": "sign"}),
    ("bit_flip", {"bit": "exponent_msb"}),
    ("bit_flip", {"bit": 0}),
]
CASE_IDS = [f"{name}-{'-'.join(f'{k}={v}' for k, v in params.items())}" for name, params in CASES]


def selection_for(model: torch.nn.Module, k: int = 6, seed: int = 0) -> dict[str, torch.Tensor]:
    """k random flat indices (with a duplicate) in every parameter."""
    gen = torch.Generator().manual_seed(seed)
    sel = {}
    for name, p in model.named_parameters():
        idx = torch.randint(p.numel(), (k,), generator=gen)
        sel[name] = torch.cat([idx, idx[:1]])
    return sel


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(("name", "params"), CASES, ids=CASE_IDS)
def test_model_restore_is_bit_exact_and_changes_only_the_selection(name, params, dtype, model_bits):
    model = build_tiny_model("tiny-mixtral", dtype=dtype)
    before = model_bits(model)
    sel = selection_for(model)
    with apply_perturbation(model, sel, name, trial_generator(0, name, 0), **params) as info:
        during = model_bits(model)
        for pname, idx in sel.items():
            changed = (during[pname] != before[pname]).reshape(-1).nonzero().squeeze(1)
            assert set(changed.tolist()) <= set(idx.tolist())
            assert changed.numel() == info.params[pname].n_changed
            assert info.params[pname].n_selected == idx.unique().numel()
        if name != "gauss_noise":  # noise can round back to the original value in 16 bits
            assert info.totals()["n_changed"] > 0
    after = model_bits(model)
    assert all(torch.equal(after[n], before[n]) for n in before)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(("name", "params"), CASES, ids=CASE_IDS)
def test_restore_keeps_nan_payloads_signed_zero_inf_and_subnormals(name, params, dtype, bits, special_tensor):
    tensors = {"w": special_tensor(dtype)}
    before = bits(tensors["w"])
    everything = {"w": torch.arange(tensors["w"].numel())}
    with apply_perturbation(tensors, everything, name, trial_generator(1, name, 0), **params):
        pass
    assert torch.equal(bits(tensors["w"]), before)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_bit_flips_that_make_inf_and_nan_are_counted_and_restored(dtype, bits):
    w = torch.tensor([1.0, 1.5, -1.0, 0.75], dtype=dtype)  # exponent MSB flip: inf, NaN, -inf, finite
    before = bits(w)
    everything = {"w": torch.arange(4)}
    with apply_perturbation({"w": w}, everything, "bit_flip", torch.Generator(), bit="exponent_msb") as info:
        assert w[0] == float("inf") and w[1].isnan() and w[2] == float("-inf") and w[3].isfinite()
        change = info.params["w"]
        assert (change.n_inf, change.n_nan, change.n_changed) == (2, 1, 4)
        assert change.details["bit_flips"] == {torch.finfo(dtype).bits - 2: 4}
    assert torch.equal(bits(w), before)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_restores_when_the_block_raises(dtype, model_bits):
    model = build_tiny_model("tiny-llama", dtype=dtype)
    before = model_bits(model)
    with pytest.raises(ValueError, match="inside"):
        with apply_perturbation(model, selection_for(model), "bit_flip", torch.Generator(), prob=0.5):
            raise ValueError("inside")
    assert all(torch.equal(t, before[n]) for n, t in model_bits(model).items())


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("position", ["lsb", "middle", "sign"])
def test_a_single_bit_changed_elsewhere_in_a_touched_tensor_raises(dtype, position):
    w = torch.randn(16, 16).to(dtype)
    width = torch.finfo(dtype).bits
    bit = {"lsb": 0, "middle": width // 2, "sign": width - 1}[position]
    with pytest.raises(RuntimeError, match="w"):
        with apply_perturbation({"w": w}, {"w": torch.tensor([3, 40])}, "zero", torch.Generator()):
            flat = w.view(-1).view(int_view_dtype(dtype))
            flat[200] ^= torch.tensor((1 << bit) - (1 << width) * (bit == width - 1), dtype=flat.dtype)


def test_a_changed_nan_payload_elsewhere_raises(special_tensor):
    w = special_tensor(torch.float32)  # flat 0 holds NaN payload 0x7FC01234
    with pytest.raises(RuntimeError, match="corrupted"):
        with apply_perturbation({"w": w}, {"w": torch.tensor([10])}, "sign_flip", torch.Generator()):
            w.view(-1).view(torch.int32)[0] = 0x7FC01235
            assert w.view(-1)[0].isnan()


def test_a_failed_restore_raises_even_over_the_blocks_exception(monkeypatch):
    w = torch.randn(8, 8)
    write = apply_module._write_bits
    with pytest.raises(RuntimeError, match="1 tensor") as raised:
        with apply_perturbation({"w": w}, {"w": torch.tensor([5, 9])}, "sign_flip", torch.Generator()):
            # from now on every write (the restore) puts back the original bits with the LSB flipped
            monkeypatch.setattr(apply_module, "_write_bits", lambda t, i, b: write(t, i, b ^ 1))
            raise KeyError("evaluation failed")
    assert isinstance(raised.value.__context__, KeyError)


def test_saved_state_is_o_k_not_a_model_copy():
    model = build_tiny_model("tiny-llama")
    sel = {"model.embed_tokens.weight": torch.tensor([1, 2, 3]), "lm_head.weight": torch.tensor([7, 7, 8])}
    with apply_perturbation(model, sel, "zero", torch.Generator()) as info:
        k = info.totals()["n_selected"]
        assert k == 5
        assert info.saved_bytes == k * (8 + 4)  # an int64 index and 4 stored bytes per weight
        model_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
        assert info.saved_bytes < model_bytes / 1_000


def test_duplicates_count_once_and_restore_cleanly(bits):
    w = torch.randn(10)
    before = bits(w)
    with apply_perturbation({"w": w}, {"w": torch.tensor([4, 4, 4, 2])}, "sign_flip", torch.Generator()) as info:
        assert info.params["w"].n_selected == 2
        assert torch.equal(w[[2, 4]], -torch.from_numpy(before.view(torch.float32).numpy())[[2, 4]])
    assert torch.equal(bits(w), before)


def test_perturbed_values_are_the_brute_force_ones():
    w = torch.randn(5, 7)
    reference = w.clone()
    idx = torch.tensor([0, 8, 34])
    rows, cols = idx // 7, idx % 7
    with apply_perturbation({"w": w}, {"w": idx}, "sign_flip", torch.Generator(), scale=3.0):
        expected = reference.clone()
        expected[rows, cols] = -3.0 * reference[rows, cols]
        assert torch.equal(w, expected)
    with apply_perturbation({"w": w}, {"w": idx}, "zero", torch.Generator()):
        assert torch.equal(w[rows, cols], torch.zeros(3)) and int((w != reference).sum()) == 3
    assert torch.equal(w, reference)


def test_flat_indices_follow_the_tensors_own_row_major_order_even_when_not_contiguous(bits):
    base = torch.randn(6, 4)
    w = base.t()  # [4, 6], not contiguous
    before = bits(base)
    with apply_perturbation({"w": w}, {"w": torch.tensor([7])}, "zero", torch.Generator()):
        assert w[1, 1] == 0 and int((w == 0).sum()) == 1
    assert torch.equal(bits(base), before)


def test_same_seed_same_perturbation_other_trial_other_draw():
    model = build_tiny_model("tiny-llama")
    sel = selection_for(model)
    name = "model.layers.1.mlp.up_proj.weight"

    def perturbed(trial: int) -> torch.Tensor:
        with apply_perturbation(model, sel, "gauss_noise", trial_generator(7, "noise", trial), scale=0.1):
            return model.get_parameter(name).detach().clone()

    assert torch.equal(perturbed(0), perturbed(0))
    assert not torch.equal(perturbed(0), perturbed(1))


def test_tied_parameters_under_two_names_restore(bits):
    class Tied(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = torch.nn.Parameter(torch.randn(4, 4))
            self.b = self.a

    module = Tied()
    before = bits(module.a)
    sel = {"a": torch.tensor([0, 1]), "b": torch.tensor([1, 2])}
    with apply_perturbation(module, sel, "bit_flip", torch.Generator(), prob=0.5):
        pass
    assert torch.equal(bits(module.a), before)


def test_accepts_a_weight_set_from_ranking():
    model = build_tiny_model("tiny-llama")
    scores = {n: p.detach().abs() for n, p in model.named_parameters() if p.ndim == 2}
    selection = top_k(scores, 3, "per_layer")
    with apply_perturbation(model, selection, "zero", torch.Generator()) as info:
        assert set(info.params) == set(scores)
        assert all(c.n_selected == 3 for c in info.params.values())


def test_parameters_require_grad_and_autograd_is_untouched():
    model = build_tiny_model("tiny-llama")
    p = model.get_parameter("model.norm.weight")
    with apply_perturbation(model, {"model.norm.weight": torch.tensor([0])}, "zero", torch.Generator()):
        assert p.requires_grad and p.grad is None and p[0] == 0


def test_a_user_perturbation_goes_through_the_same_machinery(bits):
    class AddOne(Perturbation):
        name = "add_one"

        def definition(self, opts):
            return "w -> w + 1"

        def compute(self, values, generator, tensor, opts):
            return values + 1, {}

    w = torch.zeros(3)
    with apply_perturbation({"w": w}, {"w": torch.tensor([1])}, AddOne(), torch.Generator()) as info:
        assert w.tolist() == [0.0, 1.0, 0.0] and info.definition == "w -> w + 1"
    assert w.tolist() == [0.0, 0.0, 0.0]


def test_info_is_json_ready():
    import json

    w = torch.randn(4, 4)
    with apply_perturbation({"w": w}, {"w": torch.tensor([1, 2])}, "bit_flip", torch.Generator(), bit=3) as info:
        data = json.loads(json.dumps(info.to_dict()))
    assert data["definition"] == "flip bit 3 of the stored value (0 = least significant)"
    assert data["totals"] == {"n_selected": 2, "n_changed": 2, "n_nan": 0, "n_inf": 0, "bit_flips": {"3": 2}}


@pytest.mark.parametrize(
    ("selection", "name", "params", "message"),
    [
        ({"w": torch.tensor([0])}, "nope", {}, "unknown perturbation 'nope'; choose one of: sign_flip, zero"),
        ({"w": torch.tensor([0])}, "bit_flip", {"bit": 32}, "outside float32's 32 bits"),
        ({"w": torch.tensor([0])}, "bit_flip", {}, "exactly one of prob"),
        ({"w": torch.tensor([0])}, "sign_flip", {"scale": -1}, "scale must be a finite number >= 0"),
        ({"w": torch.tensor([0])}, "zero", {"scale": 2.0}, "does not take scale"),
        ({"v": torch.tensor([0])}, "zero", {}, "'v', which is not a parameter"),
        ({"w": torch.tensor([16])}, "zero", {}, "flat index 16 is outside w, which has 16 weights"),
        ({"w": torch.tensor([-1])}, "zero", {}, "flat index -1 is outside"),
        ({"w": torch.tensor([1.0])}, "zero", {}, "must be integers"),
        ({}, "bit_flip", {"prob": 2.0}, r"prob must be in \[0, 1\]"),
    ],
)
def test_bad_inputs_raise_esa_error_and_leave_the_model_alone(selection, name, params, message, bits):
    w = torch.randn(4, 4)
    before = bits(w)
    with pytest.raises(EsaError, match=message):
        with apply_perturbation({"w": w}, selection, name, torch.Generator(), **params):
            pass
    assert torch.equal(bits(w), before)


def test_a_bad_option_for_a_later_tensor_writes_nothing(bits):
    tensors = {"a": torch.randn(4), "b": torch.randn(4).half()}
    before = {n: bits(t) for n, t in tensors.items()}
    sel = {"a": torch.tensor([0]), "b": torch.tensor([0])}
    with pytest.raises(EsaError, match="float16's 16 bits"):
        with apply_perturbation(tensors, sel, "bit_flip", torch.Generator(), bit=20):
            pass
    assert all(torch.equal(bits(t), before[n]) for n, t in tensors.items())


def test_offloaded_and_unsupported_tensors_are_refused():
    first = {"w": torch.tensor([0])}
    with pytest.raises(EsaError, match="meta device"):
        with apply_perturbation({"w": torch.empty(4, device="meta")}, first, "zero", torch.Generator()):
            pass
    with pytest.raises(EsaError, match="int64; perturbations support"):
        with apply_perturbation({"w": torch.arange(4)}, first, "zero", torch.Generator()):
            pass


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_parameters_on_different_devices_get_the_same_draws_as_on_cpu(bits):
    sel = {"a": torch.tensor([0, 3]), "b": torch.tensor([1, 2, 5])}
    cpu = {"a": torch.randn(8), "b": torch.randn(8).bfloat16()}
    mixed = {"a": cpu["a"].clone(), "b": cpu["b"].clone().cuda()}
    before = {n: t.clone() for n, t in mixed.items()}
    results = []
    for tensors in (cpu, mixed):
        with apply_perturbation(tensors, sel, "gauss_noise", trial_generator(3, "x", 0), scale=0.2):
            results.append({n: t.detach().cpu().clone() for n, t in tensors.items()})
    assert all(torch.equal(results[0][n], results[1][n]) for n in sel)
    assert all(torch.equal(bits(mixed[n]).cpu(), bits(before[n])) for n in sel)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_a_dense_selection_saves_one_copy_and_still_catches_a_stray_bit(dtype):
    """Half of a tensor (pruning's case): index + bits would cost more than the tensor, so the whole
    tensor is copied once; restore is still bit-exact and a bit changed outside the selection still raises."""
    w = torch.randn(16, 16).to(dtype)
    before = w.clone()
    half = {"w": torch.arange(0, 256, 2)}
    with apply_perturbation({"w": w}, half, "zero", torch.Generator()) as info:
        assert info.saved_bytes == w.numel() * w.element_size()
        assert bool((w.view(-1)[::2] == 0).all()) and torch.equal(w.view(-1)[1::2], before.view(-1)[1::2])
    assert torch.equal(w.view(int_view_dtype(dtype)), before.view(int_view_dtype(dtype)))
    with pytest.raises(RuntimeError, match="w"):
        with apply_perturbation({"w": w}, half, "zero", torch.Generator()):
            w.view(-1).view(int_view_dtype(dtype))[201] ^= 1


def test_a_non_contiguous_tensor_is_perturbed_and_restored_at_the_right_positions(bits):
    base = torch.randn(8, 6)
    w = base.t()  # a transposed view: flat indices follow w's own [row, col] order, not memory order
    before = bits(w.contiguous())
    for sel in (torch.tensor([1, 7]), torch.arange(0, 48)):  # sparse (checksum) and dense (copy) paths
        with apply_perturbation({"w": w}, {"w": sel}, "zero", torch.Generator()):
            assert bool((w.reshape(-1)[sel] == 0).all())
            assert int((w != 0).sum()) == 48 - sel.numel()
        assert torch.equal(bits(w.contiguous()), before)
