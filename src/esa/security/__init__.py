"""Security and fault tolerance: fault-injection campaigns, a bit-flip attack search, integrity
fingerprints and model diffs, all built on ESA's critical-weight rankings.

    from esa.security import fault_campaign
    res = fault_campaign(lm, windows, injections=1000, sites=("topk", "grad_x_weight", 1000), bits="all")
"""

from esa.security.faults import Failure, Fault, FaultResult, Trial, critical_weights, fault_campaign, side_by_side
from esa.security.rates import Rate, leveugle_sample_size, wilson
from esa.security.sites import BIT_CLASSES, SitePopulation, bit_class, bit_positions

__all__ = [
    "BIT_CLASSES", "Failure", "Fault", "FaultResult", "Rate", "SitePopulation", "Trial", "bit_class",
    "bit_positions", "critical_weights", "fault_campaign", "leveugle_sample_size", "side_by_side", "wilson",
]
