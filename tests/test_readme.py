"""The README's instructions work: its Python snippet runs as written (from the repository root,
where `examples/mlp.tp` resolves) and computes what it says, and its shell commands are the ones
that install the package and run this test suite."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import tpcompile

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```\s*$", re.MULTILINE | re.DOTALL)


def fenced_blocks() -> list[tuple[str, str]]:
    """(info string, body) of every fenced code block of the README, in order."""
    return [(m.group(1).strip(), m.group(2)) for m in FENCE.finditer(README.read_text())]


def python_snippet() -> str:
    """The README's ```python blocks, in order: each continues the one before."""
    blocks = [body for info, body in fenced_blocks() if info == "python"]
    assert blocks, "expected ```python blocks in README.md"
    return "\n".join(blocks)


def shell_commands() -> list[str]:
    """The commands of the README's shell blocks (untagged blocks that are not `.tp` programs),
    split at `&&`."""
    commands = []
    for info, body in fenced_blocks():
        if info not in ("", "sh", "bash", "console", "shell"):
            continue
        for line in body.splitlines():
            line = line.removeprefix("$ ").strip()
            if line and not line.startswith("#"):
                commands += [c.strip() for c in line.split("&&")]
    return commands


def test_readme_python_snippet_runs(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.chdir(ROOT)  # the snippet opens examples/mlp.tp relative to the repository root
    namespace: dict = {"__name__": "readme"}
    exec(compile(python_snippet(), str(README), "exec"), namespace)  # noqa: S102
    c, x, k = namespace["c"], namespace["x"], namespace["k"]
    assert isinstance(c, tpcompile.Compiled)
    assert x.shape == (20, 10)
    assert k._fields == ("nngp", "ntk")
    assert k.nngp.shape == k.ntk.shape == (20, 20)  # the "(20, 20) arrays" of the comment
    assert k.nngp.dtype == k.ntk.dtype == np.float64  # the snippet turns on float64
    assert np.all(np.isfinite(k.nngp)) and np.all(np.isfinite(k.ntk))
    # the snippet's `params={"L": 5}` reached the program: five layers, not the file's L = 3
    assert c.ir.params["L"] == 5 and len(c.ir.weights) == 5  # U and W[2..5]
    assert capsys.readouterr().out == c.source + "\n"  # print(c.source): the generated module
    # the prediction block: an ensemble mean on the 5 test points, a fitted classifier
    assert namespace["mean"].shape == (5, 1) and np.all(np.isfinite(namespace["mean"]))
    clf, x_train, y_train = namespace["clf"], namespace["x_train"], namespace["y_train"]
    assert (clf.predict(x_train) == (y_train[:, 0] > 0)).all()  # t = ∞ fits the training set


def test_readme_shell_commands_install_and_test() -> None:
    commands = shell_commands()
    assert "pip install -e ." in commands, commands
    assert "python -m pytest -q -n auto" in commands, commands
    # every file a command names exists (e.g. the example the quick start computes)
    for cmd in commands:
        for word in cmd.split():
            if word.endswith(".tp"):
                assert (ROOT / word).is_file(), f"README command `{cmd}` names a missing {word}"
