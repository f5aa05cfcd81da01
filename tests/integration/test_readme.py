"""The README's example and usage blocks run as written, and say what they claim."""

from __future__ import annotations

import re

import pytest

from conftest import REPO

README = REPO / "README.md"


def _block_after(text: str, heading: str) -> str:
    return re.search(r"```python\n(.*?)```", text[text.index(heading):], re.S).group(1)


@pytest.mark.slow
def test_readme_example_and_usage_blocks_run_on_the_fast_path():
    text = open(README).read()
    namespace: dict = {}
    exec(compile(_block_after(text, "## Example"), "README.md (Example)", "exec"), namespace)
    out = namespace["out"]
    assert out.laplacian.shape == namespace["x"].shape[:1]
    assert (out.engine, out.algorithm) == ("taylor", "forward")  # the fast path, on CPU too
    assert namespace["net"][0].weight.grad is not None
    exec(compile(_block_after(text, "## Usage"), "README.md (Usage)", "exec"), namespace)
    assert abs(float(namespace["step_a"]) - 2.0) < 1e-4 and abs(float(namespace["step_b"]) - 3.0) < 1e-4
