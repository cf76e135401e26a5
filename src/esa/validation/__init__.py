"""Phase 3 as a library call: perturb a ranked selection against matched controls and test the damage.

    result = esa.validate(lm, profile.selection, "zero", eval_windows=windows, ks=[10], trials=20, seed=1)
    result.table          # one row per evaluated condition (a DataFrame)
    result.criteria       # typed Criterion objects (passed: True / False / None = N/A)
"""

from esa.validation.validate import ValidationResult, combine, prefix, validate

__all__ = ["ValidationResult", "combine", "prefix", "validate"]
