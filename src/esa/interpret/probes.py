"""Knowledge probes: (prompt, answer) pairs, the built-in set of simple facts, and the JSONL reader.

A user file has one JSON object per line, {"prompt": "...", "answer": "..."}; blank lines are skipped.
The answer is scored as the continuation of the prompt, so it usually starts with a space.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from esa.errors import EsaError


@dataclass(frozen=True)
class Probe:
    prompt: str
    answer: str


_FACTS = """
The capital of France is|Paris
The capital of Germany is|Berlin
The capital of Italy is|Rome
The capital of Spain is|Madrid
The capital of Japan is|Tokyo
The capital of Russia is|Moscow
The capital of England is|London
The capital of Egypt is|Cairo
The capital of Greece is|Athens
The capital of China is|Beijing
The capital of Canada is|Ottawa
The capital of Portugal is|Lisbon
The Eiffel Tower is in the city of|Paris
The Colosseum is in the city of|Rome
The Statue of Liberty is in the city of|New York
Mount Fuji is in the country of|Japan
The Great Wall is in the country of|China
The pyramids of Giza are in the country of|Egypt
The largest ocean on Earth is the|Pacific
The longest river in Africa is the|Nile
The planet closest to the Sun is|Mercury
The largest planet in the solar system is|Jupiter
The planet known as the Red Planet is|Mars
The natural satellite of the Earth is the|Moon
Water is made of hydrogen and|oxygen
The chemical symbol for gold is|Au
The chemical symbol for iron is|Fe
Water freezes at zero degrees|Celsius
The opposite of hot is|cold
The opposite of up is|down
The opposite of black is|white
The opposite of day is|night
The color of the sky on a clear day is|blue
The color of grass is|green
The color of snow is|white
A week has seven|days
A year has twelve|months
An hour has sixty|minutes
The day after Monday is|Tuesday
The month after January is|February
Two plus two equals|four
Ten minus three equals|seven
The first letter of the alphabet is|A
A baby cat is called a|kitten
A baby dog is called a|puppy
Bees make|honey
Cows give|milk
The author of Romeo and Juliet is William|Shakespeare
The theory of relativity was developed by Albert|Einstein
The first man on the Moon was Neil|Armstrong
The inventor of the telephone was Alexander Graham|Bell
The Mona Lisa was painted by Leonardo da|Vinci
The programming language named after a snake is|Python
The currency of Japan is the|yen
The currency of the United States is the|dollar
The language spoken in Brazil is|Portuguese
The language spoken in Mexico is|Spanish
People breathe in|oxygen
Ice is frozen|water
The fastest land animal is the|cheetah
"""

BUILTIN_PROBES: tuple[Probe, ...] = tuple(
    Probe(prompt, " " + answer) for prompt, answer in (line.split("|") for line in _FACTS.strip().splitlines())
)


def parse_probes(lines: list[str], source: str = "probes") -> list[Probe]:
    """Probes from JSONL lines; EsaError naming the first bad line."""
    probes = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise EsaError(f"{source} line {number} is not JSON ({exc.msg}); write one "
                           '{"prompt": ..., "answer": ...} object per line') from None
        if not isinstance(row, dict) or not isinstance(row.get("prompt"), str) or not isinstance(row.get("answer"), str):
            raise EsaError(f'{source} line {number} needs string fields "prompt" and "answer"; fix that line')
        if not row["prompt"].strip():
            raise EsaError(f"{source} line {number} has an empty prompt; give the text before the answer")
        probes.append(Probe(row["prompt"], row["answer"]))
    if not probes:
        raise EsaError(f"{source} holds no probes; write one JSON object per line")
    return probes


def load_probes(path: str | Path) -> list[Probe]:
    """Probes from a JSONL file."""
    path = Path(path)
    if not path.is_file():
        raise EsaError(f"probe file {path} does not exist; give a JSONL file of prompt/answer pairs")
    return parse_probes(path.read_text(encoding="utf-8").splitlines(), str(path))
