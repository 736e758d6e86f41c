"""Every python block of the README runs as written and prints what its comments say."""

import pathlib
import re

import pytest

README = (pathlib.Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
BLOCKS = re.findall(r"```python\n(.*?)```", README, flags=re.S)


def _title(block: str) -> str:
    """The heading the block sits under."""
    before = README[: README.index(block)]
    return re.findall(r"^## (.+)$", before, flags=re.M)[-1]


def test_readme_has_the_blocks_a_new_user_needs():
    titles = [_title(b) for b in BLOCKS]
    assert titles.count("Quick start") == 1
    assert titles.count("Use the layers in your own project") == 2  # NNX and Linen
    assert "import flax.linen" in BLOCKS[titles.index("Use the layers in your own project") + 1]


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_python_block_runs(index, capsys):
    block = BLOCKS[index]
    exec(compile(block, f"README.md (python block {index})", "exec"), {})  # fresh namespace each
    out = capsys.readouterr().out
    if _title(block) == "Quick start":
        assert "[]" in out  # check_exact finds nothing that breaks exactness
    else:
        # the last line's comment gives what the block prints: the logits' shape and invariance
        assert out.split("\n")[-2] == "(4, 10) True", out
