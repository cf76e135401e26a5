"""Security and fault tolerance: fault-injection campaigns, a bit-flip attack search, integrity
fingerprints and model diffs, all built on ESA's critical-weight rankings.

    from esa.security import fault_campaign
    res = fault_campaign(lm, windows, injections=1000, sites=("topk", "grad_x_weight", 1000), bits="all")

    with quantized_codes(lm, windows, bits=4, group_size=64) as (quant, codes):  # faults in the integer codes
        res = fault_campaign(lm, windows, injections=1000, codes=codes)
"""

from esa.security.attack import AttackResult, DefenceResult, Flip, bit_flip_attack, defended_attack
from esa.security.diff import DiffResult, ProfileShift, TensorDiff, diff_models
from esa.security.codes import CodeSpace, CodeTensor, code_bit_positions, quantized_codes
from esa.security.faults import (
    BitSpace, Failure, Fault, FaultResult, StoredBits, Trial, critical_weights, fault_campaign, side_by_side,
)
from esa.security.fingerprint import Fingerprint, TensorChange, VerifyResult, WeightChange, fingerprint, verify
from esa.security.rates import Rate, leveugle_sample_size, wilson
from esa.security.sites import BIT_CLASSES, SitePopulation, bit_class, bit_positions

__all__ = [
    "BIT_CLASSES", "AttackResult", "BitSpace", "CodeSpace", "CodeTensor", "DefenceResult", "DiffResult", "Failure",
    "Fault", "FaultResult", "Fingerprint", "Flip", "ProfileShift", "Rate", "SitePopulation", "StoredBits",
    "TensorChange", "TensorDiff", "Trial", "VerifyResult", "WeightChange", "bit_class", "bit_flip_attack",
    "bit_positions", "code_bit_positions", "critical_weights", "defended_attack", "diff_models", "fault_campaign",
    "fingerprint", "leveugle_sample_size", "quantized_codes", "side_by_side", "verify", "wilson",
]
