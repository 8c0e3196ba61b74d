"""Ground truth from torch for the zip tricks of tests/evil_cases.py (``PROOFS``): torch itself, in a child
process in a temporary folder, must read the hidden or shadowed record (its own reader gives the same bytes
tsinspect's lookup gives) and run the payload; then tsinspect must show that record and call the file unsafe.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

import evil_cases
from tsinspect.archive.reader import open_archive
from tsinspect.safety.scan import scan_file

_CHILD = textwrap.dedent('''
    import json, sys, warnings
    import torch
    warnings.simplefilter("ignore")
    loader, path, names = sys.argv[1], sys.argv[2], sys.argv[3:]
    out = {"records": {}, "error": None, "code": ""}
    try:
        reader = torch._C.PyTorchFileReader(path)
        for name in names:
            out["records"][name] = reader.get_record(name).hex() if reader.has_record(name) else None
    except Exception as exc:
        out["error"] = "reader: %s" % exc
    try:
        if loader == "torch.load":
            torch.load(path, weights_only=False)
        else:
            module = torch.jit.load(path)
            out["code"] = module.code
            if loader.endswith("+forward"):
                module(torch.ones(2, 4))
    except Exception as exc:
        out["error"] = "%s: %s" % (type(exc).__name__, str(exc).splitlines()[0][:300])
    print(json.dumps(out))
''')

CASES = [evil_cases.BY_ID[case_id] for case_id in evil_cases.PROOFS]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_torch_reads_what_tsinspect_shows(case, tmp_path):
    proof = evil_cases.PROOFS[case.id]
    work = tmp_path / "torch"
    work.mkdir()
    marker = work / "marker"
    path = tmp_path / case.filename
    path.write_bytes(case.build(str(marker)))
    proc = subprocess.run([sys.executable, "-c", _CHILD, proof.loader, str(path), *proof.records],
                          capture_output=True, text=True, cwd=work, timeout=300)
    torch_view = json.loads(proc.stdout.strip().splitlines()[-1])
    # torch reads the payload
    if proof.marker:
        assert marker.exists(), torch_view
    if proof.sentinel:
        assert proof.sentinel in torch_view["code"], torch_view
    # tsinspect's lookup resolves each record to the bytes torch's own reader gives
    with open_archive(path) as archive:
        for name in proof.records:
            record = archive.lookup(name)
            assert record is not None, name
            assert archive.read(record, 1 << 24).hex() == torch_view["records"][name], name
            if proof.sentinel:
                assert proof.sentinel in archive.text(name)
    # and the judge, which never runs anything, calls it unsafe
    marker.unlink(missing_ok=True)
    result = scan_file(path)
    assert result.verdict == "unsafe", [f.to_json() for f in result.findings]
    assert not marker.exists()
