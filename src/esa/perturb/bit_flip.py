"""bit_flip: flip bits of the STORED value (fp32: 32 bits, bf16/fp16: 16), as a hardware fault would.

Either every bit of every selected value flips independently with probability `prob`, or one chosen
bit flips in every selected value: `bit` is a position (0 = least significant) or a name from
NAMED_BITS. Flips happen on the integer view of the stored bits, so NaN payloads and infinities come
out exactly as the flipped bits say.
"""

from __future__ import annotations

from typing import Any

import torch

from esa.errors import EsaError
from esa.perturb.base import Perturbation, PerturbParam, bit_value, bit_width, int_view_dtype

# Named positions, as offsets from the top bit: every IEEE format stores sign, then exponent.
NAMED_BITS = {"sign": 1, "exponent_msb": 2}
_PHRASES = {"sign": "the sign bit", "exponent_msb": "the most significant exponent bit"}


def bit_position(bit: int | str, dtype: torch.dtype) -> int:
    """Position of `bit` (an int, a string of digits, or a name in NAMED_BITS) in a `dtype` value."""
    width = bit_width(dtype)
    if isinstance(bit, str) and bit in NAMED_BITS:
        return width - NAMED_BITS[bit]
    try:
        position = int(bit)
    except ValueError:
        names = ", ".join(NAMED_BITS)
        raise EsaError(f"bit must be a position 0..{width - 1} or one of {names}, got {bit!r}") from None
    if not 0 <= position < width:
        kind = str(dtype).replace("torch.", "")
        raise EsaError(f"bit {position} is outside {kind}'s {width} bits (0 = least significant, {width - 1} = sign)")
    return position


class BitFlip(Perturbation):
    name = "bit_flip"
    params = {
        "prob": PerturbParam(None, "--perturb-prob", "flip each bit independently with this probability"),
        "bit": PerturbParam(None, "--bit", "flip this bit in every selected value (0 = LSB, 'sign', 'exponent_msb')"),
    }

    def stochastic(self, opts: dict[str, Any]) -> bool:
        return opts.get("prob") is not None

    def check(self, opts: dict[str, Any], dtype: torch.dtype) -> None:
        int_view_dtype(dtype)
        if (opts["prob"] is None) == (opts["bit"] is None):
            raise EsaError(
                "bit_flip needs exactly one of prob (flip each bit with probability p) or bit (flip that bit)"
            )
        if opts["prob"] is not None:
            opts["prob"] = float(opts["prob"])
            if not 0.0 <= opts["prob"] <= 1.0:
                raise EsaError(f"bit_flip prob must be in [0, 1], got {opts['prob']}")
        elif opts["bit"] not in NAMED_BITS:
            opts["bit"] = bit_position(opts["bit"], dtype)

    def definition(self, opts: dict[str, Any]) -> str:
        if opts["prob"] is not None:
            return f"flip each bit of the stored value independently with probability {opts['prob']:g}"
        if opts["bit"] in NAMED_BITS:
            return f"flip {_PHRASES[opts['bit']]} of the stored value"
        return f"flip bit {opts['bit']} of the stored value (0 = least significant)"

    def compute(
        self, values: torch.Tensor, generator: torch.Generator, tensor: torch.Tensor, opts: dict[str, Any]
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        width, int_dtype = bit_width(values.dtype), int_view_dtype(values.dtype)
        bits = values.view(int_dtype)
        if opts["prob"] is not None:
            draw = torch.rand((bits.numel(), width), generator=generator, device=generator.device)
            flips = (draw < opts["prob"]).to(bits.device)
        else:
            flips = torch.zeros((bits.numel(), width), dtype=torch.bool, device=bits.device)
            flips[:, bit_position(opts["bit"], values.dtype)] = True
        mask = torch.zeros_like(bits.reshape(-1))
        for position in range(width):
            mask |= torch.where(flips[:, position], bit_value(position, width), 0).to(int_dtype)
        counts = flips.sum(0).tolist()
        details = {"bit_flips": {position: n for position, n in enumerate(counts) if n}}
        return (bits ^ mask.view(bits.shape)).view(values.dtype), details
