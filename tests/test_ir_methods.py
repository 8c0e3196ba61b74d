"""Methods are enumerated, never assumed; instances of one type share one set of graphs."""

from __future__ import annotations

import json
import warnings

import pytest

from helpers import run_cli


def _build(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import torch
        from torch import nn

    class Stack(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layers = nn.ModuleList([nn.Linear(4, 4) for _ in range(3)])
            self.rnn = nn.LSTM(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            for layer in self.layers:
                x = layer(x)
            y, _ = self.rnn(x)
            return y

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.script(Stack()), str(path))
    return path


@pytest.fixture(scope="module")
def stack_archive(tmp_path_factory):
    return _build(tmp_path_factory.mktemp("stack") / "stack.pt")


def test_lstm_has_no_forward_but_its_overloads(stack_archive):
    doc = json.loads(run_cli("graph", stack_archive, "--json").stdout)
    rnn = next(m for m in doc["modules"] if m["path"] == "rnn")
    names = [m["name"] for m in doc["types"][rnn["type"]]["methods"]]
    assert "forward" not in names and {"forward__0", "forward__1"} <= set(names)


def test_repeated_layers_share_their_type(stack_archive):
    doc = json.loads(run_cli("graph", stack_archive, "--json").stdout)
    layers = [m for m in doc["modules"] if m["path"].startswith("layers.")]
    assert [m["path"] for m in layers] == ["layers.0", "layers.1", "layers.2"]
    assert len({m["type"] for m in layers}) == 1
    text = run_cli("graph", stack_archive).stdout
    assert text.count("aten::linear") == 1
    assert "same type as layers.0" in text
    one = json.loads(run_cli("graph", stack_archive, "--module", "layers.2", "--method", "forward", "--json").stdout)
    assert [m["path"] for m in one["modules"]] == ["layers.2"]
    proc = run_cli("graph", stack_archive, "--module", "rnn", "--method", "forward", check=2)
    assert "no method 'forward' in module 'rnn'" in proc.stderr
