"""The traced side of each trace-vs-script finding (``Finding.traced``): the lines of the traced archive's
generated code that ran from the finding's source lines, as ``diff --json`` gives them and the TUI shows."""

from __future__ import annotations

import json

from helpers import SAMPLES, run_cli, sample_line


def test_each_finding_carries_the_traced_code_lines_of_its_excerpt():
    proc = run_cli("diff", SAMPLES / "gate_traced.pt", SAMPLES / "gate_scripted.pt", "--json", "--ir", "never",
                   check=1)
    findings = {f["line"]: f for f in json.loads(proc.stdout)["findings"]}
    branch = findings[sample_line("if-cond")]
    # the kept else branch ran: one traced line holds its ops; the dropped then branch left nothing
    assert [(t["source_lines"], t["file"].startswith("code/__torch__/models")) for t in branch["traced"]] == [
        ([sample_line("else-body")], True)]
    assert "torch.tanh(" in branch["traced"][0]["text"] and branch["traced_total"] == 1
    assert findings[sample_line("train-cond")]["traced"] == []
    loop = findings[sample_line("loop")]["traced"]
    assert [t["source_lines"] for t in loop] == [[sample_line("loop-body")]] * 2  # unrolled twice
    assert loop[0]["line"] + 1 == loop[1]["line"] and all("torch.add(" in t["text"] for t in loop)


def test_the_text_report_is_unchanged_by_the_traced_side():
    out = run_cli("diff", SAMPLES / "gate_traced.pt", SAMPLES / "gate_scripted.pt", "--ir", "never", check=1).stdout
    assert "CONSTANTS" not in out and "code/__torch__" not in out
    assert out.rstrip().endswith("3 findings: 2 dropped_branch, 1 unrolled_loop")
