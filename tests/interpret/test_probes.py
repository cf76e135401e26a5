import json

import pytest

from esa.errors import EsaError
from esa.interpret import BUILTIN_PROBES, load_probes, parse_probes
from esa.interpret.knowledge import encode_probes


def test_builtin_set_has_at_least_50_distinct_facts():
    assert len(BUILTIN_PROBES) >= 50
    assert len({p.prompt for p in BUILTIN_PROBES}) == len(BUILTIN_PROBES)
    assert all(p.answer.startswith(" ") and p.answer.strip() for p in BUILTIN_PROBES)


def test_jsonl_round_trip(tmp_path):
    path = tmp_path / "facts.jsonl"
    path.write_text(json.dumps({"prompt": "Two plus two is", "answer": " four"}) + "\n\n"
                    + json.dumps({"prompt": "Snow is", "answer": " white", "extra": 1}) + "\n")
    probes = load_probes(path)
    assert [(p.prompt, p.answer) for p in probes] == [("Two plus two is", " four"), ("Snow is", " white")]


@pytest.mark.parametrize("lines, message", [
    (['{"prompt": "a", "answer": " b"}', "{not json"], "line 2 is not JSON"),
    (['{"prompt": "a"}'], 'line 1 needs string fields "prompt" and "answer"'),
    (['["a", "b"]'], "line 1 needs string fields"),
    (['{"prompt": " ", "answer": " b"}'], "line 1 has an empty prompt"),
    (["", "  "], "holds no probes"),
])
def test_malformed_lines(lines, message):
    with pytest.raises(EsaError, match=message):
        parse_probes(lines)


def test_missing_file(tmp_path):
    with pytest.raises(EsaError, match="does not exist"):
        load_probes(tmp_path / "nope.jsonl")


def test_answer_that_tokenises_to_nothing(planted):
    from esa.interpret import Probe

    assert encode_probes(planted, [Probe("Snow is", " white")])[0][1] == list(b" white")
    with pytest.raises(EsaError, match="probe 2 .* tokenises to nothing"):
        encode_probes(planted, [Probe("Snow is", " white"), Probe("Grass is", "")])
