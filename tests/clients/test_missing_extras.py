"""A framework that is not installed: one line naming the extra to install (simulated by hiding the module)."""

from __future__ import annotations

import subprocess
import sys

import pytest

CASES = [
    ("trainsound.lightning", "lightning",
     "trainsound.lightning needs Lightning: pip install 'trainsound[lightning]'"),
    ("trainsound.transformers", "transformers",
     "trainsound.transformers needs Hugging Face transformers: pip install 'trainsound[transformers]'"),
    ("trainsound.optax", "jax", "trainsound.optax needs JAX: pip install 'trainsound[jax]'"),
]


@pytest.mark.parametrize(("module", "hidden", "line"), CASES)
def test_missing_framework_is_one_line(module: str, hidden: str, line: str) -> None:
    # sys.modules[name] = None makes `import name` fail, as if the package were not installed.
    code = (f"import sys; sys.modules[{hidden!r}] = None\n"
            f"try:\n    import {module}\nexcept ImportError as err:\n    print(type(err).__name__, err)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == f"MissingExtraError {line}"


def test_follow_without_tensorboard_is_one_line(tmp_path) -> None:
    code = ("import sys; sys.modules['tensorboard'] = None\n"
            "from trainsound.bridge.cli import main\n"
            f"sys.exit(main(['follow', {str(tmp_path)!r}, '--once']))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert out.stderr.strip().splitlines() == [
        "trainsound: error: reading TensorBoard logs needs tensorboard: pip install 'trainsound[tensorboard]'"]
