"""One row per finished run directory: the model's facts and every sensitivity quantity it saved.

Read-only and recompute-nothing: each number is copied from a saved file (sensitivity_stats.json,
perturbation_results.json, superweights.json, baseline.json, prune/quant results when present) or
derived from saved numbers by a rule written next to it. A field a run does not hold is NaN.

Model facts come from the manifest's model summary (`esa.models.facts` writes `n_nonembedding`,
`n_active`, `hidden_size`, `vocab_size`, `n_experts`, `experts_per_token`, `instruction_tuned` and
`instruction_tuned_source` at load time). For runs written before the summary held them, the same rules
are applied here to the model's own config: a tiny alias's config (built in code), a local model
directory's config.json, or a bundled GGUF's dequantized cache's config.json; else NaN.

Derived facts (the same rules as esa.models.facts; see RULES):
- non-embedding parameters = n_params - embedding - lm_head parameters (Kaplan et al. 2020's N);
- MoE when the summary counts router or expert parameters; active parameters = non-expert parameters
  + expert parameters * experts_per_token / n_experts (total parameters for a dense model);
- instruction-tuned when the model id, the GGUF file name or the model path matches INSTRUCT_PATTERN
  ("instruct", "chat", "it" as a name part, "sft"; case-insensitive); base otherwise (tiny random models
  are base). A chat template is no evidence: base checkpoints (Gemma 3 pt, for one) ship one too.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from esa.artifacts import is_run_dir, read_json
from esa.artifacts import schema as S
from esa.errors import EsaError
from esa.models.facts import INSTRUCT_PATTERN, N_EXPERTS_KEYS, PER_TOKEN_KEYS

NAN = float("nan")
# Scores above this multiple of the median count as "above threshold" (frac_above_threshold).
THRESHOLD_X_MEDIAN = 100.0
TOP_SHARE_KEY = "0.1%"
FEED_FORWARD = ("mlp", "expert", "router")
# The per-run sensitivity quantities, named as in sensitivity_stats.json "global".
SENSITIVITY_QUANTITIES = ("max_over_median", "max_over_mean", "gini", "top_share_0.1%", "frac_above_threshold")
# What esa.models.facts records in the model summary; a run holding all of them needs no config lookup.
_SUMMARY_FACTS = ("n_nonembedding", "n_active", "hidden_size", "vocab_size", "n_experts", "experts_per_token",
                  "instruction_tuned")
RULES = {
    "n_nonembedding": "n_params - embedding - lm_head parameters (model summary params_by_component)",
    "n_active": "non-expert parameters + expert parameters * experts_per_token / n_experts; n_params when dense",
    "instruction_tuned": f"model id, GGUF file or model path matches /{INSTRUCT_PATTERN.pattern}/i "
                         "(a chat template is no evidence: base checkpoints ship one too)",
    "frac_above_threshold": f"share of scored weights with score >= {THRESHOLD_X_MEDIAN:g} x the global median, "
                            "from the saved histogram's bins wholly above it (a lower bound, bin width 2^-7 relative)",
    "superweight_strength": "delta_ppl / ppl_baseline of each candidate judged a super weight when zeroed alone",
}


def run_table(runs: Iterable[Path | str]) -> pd.DataFrame:
    """The table of `runs` (one row each, in the order given). Bad input raises EsaError first."""
    paths = [Path(r) for r in runs]
    if not paths:
        raise EsaError("no run directories given; pass one or more --out-dir folders of esa run/baseline/superweights")
    for p in paths:
        if not p.is_dir() or not is_run_dir(p):
            raise EsaError(f"{p} is not an ESA run directory (no {S.MANIFEST}); give finished run directories only")
        if str(read_json(p / S.MANIFEST).get("command", "")).startswith("study"):
            raise EsaError(f"{p} is the output of an esa study, not a run; give the run directories it was made from")
    return pd.DataFrame([read_run(p) for p in paths])


def read_run(path: Path) -> dict[str, Any]:
    """One run directory as a flat row (see the module docstring for every derived field)."""
    path = Path(path)
    manifest = read_json(path / S.MANIFEST)
    summary = dict(manifest.get("model") or {})
    config = _optional(path / S.CONFIG) or {}
    stats = _optional(path / S.SENSITIVITY_STATS)
    row: dict[str, Any] = {"run": str(path), "command": manifest.get("command", "?")}
    row.update(model_facts(summary, config))
    row["metric"] = (stats or {}).get("metric") or manifest.get("metric") or config.get("metric") or None
    row.update(sensitivity_fields(stats))
    row.update(perturbation_fields(_optional(path / S.PERTURBATION)))
    row.update(superweight_fields(_optional(path / S.SUPERWEIGHTS), row["n_layers"]))
    row.update(baseline_fields(_optional(path / S.BASELINE)))
    for prefix, name in (("prune", S.PRUNE), ("quant", S.QUANT)):
        row.update(_numeric_leaves(_optional(path / name), prefix))
    return row


def model_facts(summary: dict[str, Any], run_config: dict[str, Any]) -> dict[str, Any]:
    """Model id, family, sizes, width and kind from the model summary and the model's config."""
    model_ref = str((run_config.get("model") or {}).get("model") or summary.get("model_id") or "")
    recorded = all(key in summary for key in _SUMMARY_FACTS)
    cfg = {} if recorded else _model_config(summary, model_ref)  # older runs: read the model's config
    text_cfg = cfg.get("text_config") or cfg
    by_comp = summary.get("params_by_component") or {}
    n_params = _num(summary.get("n_params"))
    embed = float(by_comp.get("embedding", 0)) + float(by_comp.get("lm_head", 0))
    expert = float(by_comp.get("expert", 0))
    moe = bool(by_comp.get("expert", 0) or by_comp.get("router", 0))
    n_experts = _num(summary.get("n_experts", _first(text_cfg, *N_EXPERTS_KEYS)))
    per_token = _num(summary.get("experts_per_token", _first(text_cfg, *PER_TOKEN_KEYS)))
    active = n_params if not moe else (n_params - expert + expert * per_token / n_experts)
    names = " ".join(str(x) for x in (summary.get("model_id"), summary.get("gguf_file"), model_ref) if x)
    if "instruction_tuned" in summary:
        instruct = bool(summary["instruction_tuned"])
        instruct_source = summary.get("instruction_tuned_source") or "model summary"
    else:
        instruct = bool(INSTRUCT_PATTERN.search(names))
        instruct_source = f"names {names!r} (run written before the summary recorded it)"
    return {
        "model": summary.get("model_id") or model_ref or None,
        "family": summary.get("family") or cfg.get("model_type") or None,
        "source": summary.get("source"),
        "n_params": n_params,
        "n_nonembedding": _num(summary.get("n_nonembedding", n_params - embed if by_comp else None)),
        "n_active": _num(summary.get("n_active", active)),
        "n_layers": _num(summary.get("n_layers")),
        "width": _num(summary.get("hidden_size", text_cfg.get("hidden_size", text_cfg.get("d_model")))),
        "vocab_size": _num(summary.get("vocab_size", text_cfg.get("vocab_size"))),
        "moe": moe,
        "n_experts": n_experts if moe else NAN,
        "experts_per_token": per_token if moe else NAN,
        "instruction_tuned": instruct,
        "instruction_tuned_source": instruct_source,
        "kind": ("moe" if moe else "dense") + ("/instruct" if instruct else "/base"),
        "params_by_component": json.dumps(by_comp, sort_keys=True),
    }


def sensitivity_fields(stats: dict[str, Any] | None) -> dict[str, Any]:
    """Global tail statistics and component mass shares (NaN for a run that scored nothing)."""
    out: dict[str, Any] = {q: NAN for q in SENSITIVITY_QUANTITIES}
    if not stats or "global" not in stats:
        return out
    g = stats["global"]
    out["max_over_median"] = _num(g.get("max_over_median"))
    out["max_over_mean"] = _num(g.get("max_over_mean"))
    out["gini"] = _num(g.get("gini"))
    out["top_share_0.1%"] = _num((g.get("top_share") or {}).get(TOP_SHARE_KEY))
    median = _num((g.get("percentiles") or {}).get("50"))
    hist = stats.get("histogram") or {}
    if hist.get("count") and median > 0:
        above = sum(c for lo, c in zip(hist["lower"], hist["count"]) if lo >= THRESHOLD_X_MEDIAN * median)
        out["frac_above_threshold"] = above / sum(hist["count"])
    total = sum(_num(v.get("sum")) for v in (stats.get("by_component") or {}).values())
    for comp, v in (stats.get("by_component") or {}).items():
        out[f"mass_share_{comp}"] = _num(v.get("sum")) / total if total > 0 else NAN
    out["attention_vs_mlp"] = attention_ratio(stats.get("by_component") or {})
    return out


def attention_ratio(by_component: dict[str, Any]) -> float:
    """Attention mass / feed-forward mass (mlp, expert, router), the definition of architecture_analysis."""
    att = _num((by_component.get("attention") or {}).get("sum"))
    ff = sum(_num((by_component.get(c) or {}).get("sum", 0.0)) for c in FEED_FORWARD if c in by_component)
    return att / ff if ff > 0 else NAN


def perturbation_fields(results: dict[str, Any] | None) -> dict[str, Any]:
    """Per (perturbation, scale, k): target dPPL relative to baseline PPL, target/random and
    random/bottom ratios of mean dPPL, and any bits-per-byte deltas the file holds."""
    if not results:
        return {}
    base_ppl = _num((results.get("baseline") or {}).get("ppl"))
    kind = (results.get("protocol") or {}).get("perturbation", "perturb")
    out: dict[str, Any] = {}
    for entry in results.get("summary") or []:
        tag = f"{kind}@{_num(entry.get('scale')):g}:k{entry.get('k')}"
        sets = entry.get("sets") or {}
        mean = {name: _num((s.get("delta_ppl") or {}).get("mean")) for name, s in sets.items()}
        target = mean.get("target", NAN)
        out[f"delta_ppl:{tag}"] = target
        out[f"delta_ppl_rel:{tag}"] = target / base_ppl if base_ppl > 0 else NAN
        out[f"ratio_target_random:{tag}"] = _ratio(target, mean.get("random_k", NAN))
        out[f"ratio_random_bottom:{tag}"] = _ratio(mean.get("random_k", NAN), mean.get("bottom_k", NAN))
        for key, value in (sets.get("target") or {}).items():
            if "bpb" in key or "bits_per_byte" in key:
                out[f"{key}:{tag}"] = _num(value.get("mean") if isinstance(value, dict) else value)
    return out


def superweight_fields(result: dict[str, Any] | None, n_layers: float) -> dict[str, Any]:
    """Count of confirmed super weights, their strength, and where the first (strongest) one sits."""
    if result is None:
        return {"n_superweights": NAN, "superweight_strength_max": NAN, "superweights": None}
    confirmed = [c for c in result.get("candidates") or [] if _is_super(c)]
    strength = [c["delta_ppl"] / c["ppl_baseline"] for c in confirmed
                if _num(c.get("ppl_baseline")) > 0 and c.get("delta_ppl") is not None]
    return {"n_superweights": float(len(confirmed)),
            "superweight_strength_max": max(strength) if strength else NAN,
            "superweights": json.dumps([_placement(c, n_layers) for c in confirmed])}


def baseline_fields(result: dict[str, Any] | None) -> dict[str, Any]:
    fixed = (result or {}).get("fixed") or {}
    out = {"baseline_ppl": _num(fixed.get("ppl"))}
    for key, value in fixed.items():
        if "bpb" in key or "bits_per_byte" in key:
            out[f"baseline_{key}"] = _num(value)
    return out


def _placement(c: dict[str, Any], n_layers: float) -> dict[str, Any]:
    layer = c.get("layer")
    depth = layer / (n_layers - 1) if layer is not None and n_layers > 1 else (0.0 if layer is not None else NAN)
    return {"param": c.get("param"), "index": c.get("index"), "layer": layer, "relative_depth": depth,
            "component": "expert" if c.get("expert") is not None else "mlp"}


def _is_super(c: dict[str, Any]) -> bool:
    if S.IS_SUPER_WEIGHT in c:
        return bool(c[S.IS_SUPER_WEIGHT])
    return c.get("verdict") == "super weight"


def _model_config(summary: dict[str, Any], model_ref: str) -> dict[str, Any]:
    """The model's HF config as a dict (see the module docstring for where it is looked up); {} if none."""
    source = summary.get("source")
    if source == "tiny":
        from esa.models.tiny import TINY_CONFIGS, build_tiny_model

        if model_ref in TINY_CONFIGS:
            return build_tiny_model(model_ref).config.to_dict()
    folder: Path | None = None
    if model_ref and Path(model_ref).is_dir():
        folder = Path(model_ref)
    elif summary.get("gguf_file"):
        from esa.models.gguf import cache_dir

        stem = Path(str(summary["gguf_file"])).stem
        found = sorted(cache_dir().glob(f"{_glob_escape(stem)}-*/config.json"))
        folder = found[0].parent if found else None
    if folder is None or not (folder / "config.json").is_file():
        return {}
    return json.loads((folder / "config.json").read_text(encoding="utf-8"))


def _glob_escape(text: str) -> str:
    """A literal string inside a glob pattern."""
    return re.sub(r"([*?\[])", r"[\1]", text)


def _numeric_leaves(obj: Any, prefix: str, depth: int = 2) -> dict[str, float]:
    """Scalar numbers of a result file we do not know the layout of (prune/quant), as prefix.key.key."""
    if obj is None or depth < 0:
        return {}
    out: dict[str, float] = {}
    if isinstance(obj, dict):
        for key, value in obj.items():
            if isinstance(value, bool):
                continue
            if isinstance(value, (int, float)):
                out[f"{prefix}.{key}"] = float(value)
            elif isinstance(value, dict):
                out.update(_numeric_leaves(value, f"{prefix}.{key}", depth - 1))
    return out


def _optional(path: Path) -> Any:
    return read_json(path) if path.is_file() else None


def _first(cfg: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        if cfg.get(key) is not None:
            return cfg[key]
    return None


def _num(x: Any) -> float:
    """A saved number as float; None, missing or non-numeric (JSON's "nan"/"inf" strings parse) -> NaN."""
    if x is None or isinstance(x, bool):
        return NAN
    try:
        return float(x)
    except (TypeError, ValueError):
        return NAN


def _ratio(a: float, b: float) -> float:
    return a / b if math.isfinite(a) and math.isfinite(b) and b != 0 else NAN
