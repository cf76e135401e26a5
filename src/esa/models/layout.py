"""Where each parameter sits in a causal LM, found from module structure rather than from names.

Components and layers come from structure: the decoder blocks are the longest homogeneous
`nn.ModuleList` (one whose length equals the config's layer count wins), attention/MLP are the block
children whose class says so, experts are the expert container inside an MoE block, the router is
the MoE sibling whose output size is the number of experts. Attribute names are consulted only to
*name* a projection (`role`), through the alias table below, after the component is known.

Conventions:
- `role` names the module a parameter belongs to, so a Linear's weight and bias share a role
  ("o" for both `o_proj.weight` and `o_proj.bias`); the parameter name tells them apart and only
  the weight is `linear`. Fused expert tensors (parameters of the experts module itself) take their
  role from the parameter's own name (`gate_up_proj` -> "gate_up"). A name the table does not know
  keeps its attribute name as role.
- Tied input/output embeddings appear once, under the name `named_parameters()` gives (the input
  embedding's), with component "embedding" and role "embed+lm_head"; they are not `linear`
  (the tensor is indexed by token ids on the way in).
- `linear` weights are [out, in] for nn.Linear and routers; transformers' GPT-2-style `Conv1D`
  stores [in, out], so its `in_features` is `shape[0]`.
"""

from __future__ import annotations

from torch import nn
from transformers.pytorch_utils import Conv1D  # GPT-2-style projection with a transposed [in, out] weight

from esa.models.types import ParamInfo

# Attribute name -> role, per component. A fallback for naming only; components come from structure.
_ROLE_ALIASES: dict[str, dict[str, str]] = {
    "attention": {
        **dict.fromkeys(("q_proj", "query", "q", "wq"), "q"),
        **dict.fromkeys(("k_proj", "key", "k", "wk"), "k"),
        **dict.fromkeys(("v_proj", "value", "v", "wv"), "v"),
        **dict.fromkeys(("query_key_value", "qkv_proj", "Wqkv", "c_attn", "qkv", "wqkv"), "qkv"),
        **dict.fromkeys(("o_proj", "dense", "out_proj", "c_proj", "wo", "o"), "o"),
    },
    "mlp": {
        **dict.fromkeys(("gate_proj", "w1"), "gate"),
        **dict.fromkeys(("up_proj", "w3", "dense_h_to_4h", "fc1", "c_fc", "fc_in"), "up"),
        **dict.fromkeys(("down_proj", "w2", "dense_4h_to_h", "fc2", "c_proj", "fc_out"), "down"),
        **dict.fromkeys(("gate_up_proj", "w13"), "gate_up"),
    },
    "norm": {
        **dict.fromkeys(("input_layernorm", "ln_1", "attention_norm", "norm1"), "input_norm"),
        **dict.fromkeys(("post_attention_layernorm", "ln_2", "ffn_norm", "norm2"), "post_attention_norm"),
        "pre_feedforward_layernorm": "pre_mlp_norm",
        "post_feedforward_layernorm": "post_mlp_norm",
    },
}
_ROLE_ALIASES["expert"] = _ROLE_ALIASES["mlp"]

_ATTENTION_HINTS = ("attention", "attn")
_MLP_HINTS = ("mlp", "feedforward", "ffn", "moe")
_ROUTER_HINTS = ("router", "gate")


def describe_parameters(model: nn.Module) -> dict[str, ParamInfo]:
    """ParamInfo for every parameter, in `model.named_parameters()` order (tied tensors once)."""
    blocks_path, blocks = find_decoder_blocks(model)
    prefix = f"{blocks_path}."
    input_module = _module_of(model, "get_input_embeddings")
    output_module = _module_of(model, "get_output_embeddings")
    tied = is_tied(model)
    seen_blocks = False
    infos: dict[str, ParamInfo] = {}
    for name, param in model.named_parameters():
        shape = tuple(param.shape)
        if blocks is not None and name.startswith(prefix):
            seen_blocks = True
            index, _, rest = name[len(prefix):].partition(".")
            infos[name] = _describe_in_block(name, shape, int(index), blocks[int(index)], rest)
            continue
        module_path, _, attr = name.rpartition(".")
        owner = model.get_submodule(module_path)
        owner_attr = module_path.rpartition(".")[2]
        linear, in_features = _linear_facts(owner, attr, shape)
        if owner is input_module:
            component, role = "embedding", "embed+lm_head" if tied else "embed"
            linear, in_features = False, None
        elif owner is output_module:
            component, role = "lm_head", "lm_head"
        elif isinstance(owner, nn.Embedding):
            component, role = "embedding", owner_attr
        elif _is_norm(owner):
            component, role = "norm", "final_norm" if seen_blocks else "embed_norm"
        else:
            component, role = "other", owner_attr or attr
        infos[name] = ParamInfo(name, shape, None, component, role, linear=linear, in_features=in_features)
    return infos


def is_tied(model: nn.Module) -> bool:
    """Whether the output projection shares its weight tensor with the input embedding."""
    input_module = _module_of(model, "get_input_embeddings")
    output_module = _module_of(model, "get_output_embeddings")
    weight = getattr(input_module, "weight", None)
    return weight is not None and weight is getattr(output_module, "weight", None)


def find_decoder_blocks(model: nn.Module) -> tuple[str, nn.ModuleList | None]:
    """The (path, list) of decoder blocks: homogeneous ModuleLists, not nested in another one.

    One whose length equals the config's layer count wins; among the rest, the one holding the most
    parameters. Returns ("", None) for a model without repeated blocks.
    """
    n_layers = config_num_layers(model)
    candidates: list[tuple[str, nn.ModuleList]] = []
    for path, module in model.named_modules():
        if not _is_homogeneous_list(module):
            continue
        if any(path.startswith(f"{outer}.") for outer, _ in candidates):
            continue
        candidates.append((path, module))
    if not candidates:
        return "", None

    def rank(item: tuple[str, nn.ModuleList]) -> tuple[bool, int]:
        return len(item[1]) == n_layers, sum(p.numel() for p in item[1].parameters())

    return max(candidates, key=rank)


def config_num_layers(model: nn.Module) -> int | None:
    """The decoder layer count the config declares (text config for multimodal wrappers), if any."""
    config = getattr(model, "config", None)
    if config is None:
        return None
    if hasattr(config, "get_text_config"):
        config = config.get_text_config()
    for key in ("num_hidden_layers", "n_layer", "num_layers", "n_layers"):
        value = getattr(config, key, None)
        if isinstance(value, int):
            return value
    return None


def _describe_in_block(name: str, shape: tuple[int, ...], layer: int, block: nn.Module, rest: str) -> ParamInfo:
    """Classify a parameter by the chain of modules between its decoder block and itself."""
    *path, attr = rest.split(".")
    chain: list[tuple[str, nn.Module]] = []
    module = block
    for part in path:
        module = module.get_submodule(part)
        chain.append((part, module))
    owner_attr, owner = chain[-1] if chain else ("", block)
    # the parameter's own attribute names fused tensors (experts.gate_up_proj); weight/bias take the module's
    role_key = owner_attr if attr in ("weight", "bias") and owner_attr else attr

    expert_at = next((i for i, (_, m) in enumerate(chain) if _is_expert_container(m)), None)
    if expert_at is not None:
        experts = chain[expert_at][1]
        below = chain[expert_at + 1:]
        expert = int(below[0][0]) if isinstance(experts, nn.ModuleList) and below else None
        fused = expert is None and len(shape) == 3
        linear, in_features = (False, None) if fused else _linear_facts(owner, attr, shape)
        return ParamInfo(
            name, shape, layer, "expert", _role("expert", role_key), expert=expert,
            expert_axis=0 if fused else None, linear=linear, in_features=in_features,
        )
    if _is_norm(owner):
        return ParamInfo(name, shape, layer, "norm", _role("norm", role_key))
    parent = chain[-2][1] if len(chain) >= 2 else block
    if _is_router(owner, attr, parent):
        linear, in_features = _linear_facts(owner, attr, shape, router=True)
        return ParamInfo(name, shape, layer, "router", "router", linear=linear, in_features=in_features)
    component = _block_component(chain)
    linear, in_features = _linear_facts(owner, attr, shape)
    return ParamInfo(name, shape, layer, component, _role(component, role_key), linear=linear, in_features=in_features)


def _block_component(chain: list[tuple[str, nn.Module]]) -> str:
    """attention / mlp from the first block child whose class (or MoE structure) says which it is."""
    for _, module in chain:
        cls = type(module).__name__.lower()
        if any(h in cls for h in _ATTENTION_HINTS):
            return "attention"
        if any(h in cls for h in _MLP_HINTS) or _has_expert_child(module):
            return "mlp"
    return "other"


def _role(component: str, key: str) -> str:
    return _ROLE_ALIASES.get(component, {}).get(key, key)


def _linear_facts(
    owner: nn.Module, attr: str, shape: tuple[int, ...], router: bool = False
) -> tuple[bool, int | None]:
    """(linear, in_features) for the parameter `attr` of `owner`."""
    if attr != "weight" or len(shape) != 2:
        return False, None
    if isinstance(owner, nn.Linear) or router:
        return True, shape[1]
    if isinstance(owner, Conv1D):
        return True, shape[0]
    return False, None


def _is_homogeneous_list(module: nn.Module) -> bool:
    return (
        isinstance(module, nn.ModuleList)
        and len(module) > 0
        and len({type(child) for child in module}) == 1
        and any(True for _ in module.parameters())
    )


def _is_expert_container(module: nn.Module) -> bool:
    """Fused experts ("...Experts" class) or a homogeneous ModuleList inside a block (one expert each)."""
    return "expert" in type(module).__name__.lower() or _is_homogeneous_list(module)


def _has_expert_child(module: nn.Module) -> bool:
    return any(_is_expert_container(child) for child in module.children())


def _num_experts(moe: nn.Module) -> int | None:
    for child in moe.children():
        if isinstance(child, nn.ModuleList) and _is_expert_container(child):
            return len(child)
        if _is_expert_container(child):
            fused = [p for p in child.parameters(recurse=False) if p.dim() == 3]
            if fused:
                return fused[0].shape[0]
            n = getattr(child, "num_experts", None)
            if isinstance(n, int):
                return n
    return None


def _is_router(owner: nn.Module, attr: str, parent: nn.Module) -> bool:
    """The MoE gate: a sibling of the experts with one output per expert, or a Router/Gate class there."""
    if not _has_expert_child(parent) or _is_expert_container(owner):
        return False
    cls = type(owner).__name__.lower()
    if any(h in cls for h in _ROUTER_HINTS):
        return True
    weight = getattr(owner, "weight", None)
    n_experts = _num_experts(parent)
    return attr == "weight" and weight is not None and weight.dim() == 2 and weight.shape[0] == n_experts


def _is_norm(module: nn.Module) -> bool:
    """LayerNorm/RMSNorm-like: by type or class name, holding only 1-D parameters."""
    named_like = isinstance(module, nn.LayerNorm) or type(module).__name__.lower().endswith("norm")
    params = list(module.parameters(recurse=False))
    return named_like and bool(params) and all(p.dim() == 1 for p in params)


def _module_of(model: nn.Module, getter: str) -> nn.Module | None:
    """`model.get_input_embeddings()` / `get_output_embeddings()`, or None where undefined."""
    fn = getattr(model, getter, None)
    try:
        return fn() if callable(fn) else None
    except NotImplementedError:
        return None

