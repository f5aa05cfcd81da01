"""The README's usage example runs as written (on CPU: its CUDA device arguments are dropped)."""

from __future__ import annotations

import re

import pytest
import torch

from conftest import REPO

README = REPO / "README.md"


@pytest.mark.slow
def test_readme_usage_block_runs_and_gives_the_seed_answer():
    text = open(README).read()
    usage = text[text.index("## Usage"):]
    block = re.search(r"```python\n(.*?)```", usage, re.S).group(1)
    if not torch.cuda.is_available():
        block = block.replace(".cuda()", "").replace(', device="cuda"', "")
        block = block.replace("torch.rand(65536, 3)", "torch.rand(256, 3)")
    namespace: dict = {}
    exec(compile(block, "README.md", "exec"), namespace)
    assert namespace["out"].laplacian.shape == namespace["x"].shape[:1]
    assert abs(float(namespace["step_a"]) - 2.0) < 1e-4 and abs(float(namespace["step_b"]) - 3.0) < 1e-4
    assert namespace["net"][0].weight.grad is not None
