"""The demo prints what it claims: exact C4/D4 invariance, a plain CNN far from it."""

import pytest

from equilib import demo


@pytest.mark.parametrize("group", ["C4", "D4"])
def test_demo_numbers(group, capsys):
    r = demo.main(["--group", group, "--size", "17"])
    assert max(r["invariance"].values()) < 1e-5 and max(r["equivariance"].values()) < 1e-5
    assert max(r["plain_features"].values()) > 0.5
    assert "check_exact at size 18: 1 problem(s)" in capsys.readouterr().out
