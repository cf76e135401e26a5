"""Usage errors are one line too (exit 2), naming the help to read."""

import pytest


@pytest.mark.parametrize("argv,needle", [
    (["run", "--no-such-flag"], "No such option: --no-such-flag"),
    (["no-such-command"], "No such command 'no-such-command'"),
    (["compare"], "Missing argument"),
    (["run", "--trials", "many"], "Invalid value for '--trials'"),
])
def test_usage_error_is_one_line(esa, argv, needle):
    result = esa(*argv)
    assert result.code == 2
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("esa: error: ") and needle in lines[0] and "--help" in lines[0]
