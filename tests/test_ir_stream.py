"""The IR document decoded in slices (tsinspect.ir.stream) gives what json.loads and Extraction.ir give."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tsinspect.archive.reader import open_archive
from tsinspect.ir.run import Extraction, Options, Transport, extract_ir
from tsinspect.ir.stream import decode_document, extraction_ir


@pytest.fixture(scope="module")
def inlined(sample_archives) -> Extraction:
    """A real child's transport, with the inlined graphs (blocks nested in loops and ifs)."""
    with open_archive(str(sample_archives["gate_scripted"])) as archive:
        return extract_ir(archive, Options(inline=True))


def test_a_real_document_decodes_as_json_loads_does(inlined):
    body = inlined._body
    assert body is not None  # the child's text, not decoded yet
    assert decode_document(body) == json.loads(body)
    spaced = json.dumps(json.loads(body), indent=1)  # any whitespace between tokens
    assert decode_document(spaced) == json.loads(body)


def test_the_ir_is_the_one_extraction_ir_builds(inlined):
    same = Extraction(Transport(dict(inlined.header), inlined._body), inlined.scan, inlined.index)
    ours = extraction_ir(inlined)
    assert inlined.__dict__["ir"] is ours  # cached where Extraction.ir keeps it
    assert ours.to_json() == same.ir.to_json()
    assert ours.notes == same.ir.notes
    assert any(m.inlined for module in ours.modules for m in module.methods)


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
                           max_leaves=12)
graphs = st.lists(json_values, min_size=3, max_size=3).map(lambda parts: parts[:2] + [parts[2:] or []])
methods = st.fixed_dictionaries({"name": st.text(), "graph": graphs | st.none()},
                                optional={"inlined": graphs, "error": json_values})


@settings(max_examples=200, deadline=None)
@given(st.fixed_dictionaries({"schema": st.text(), "types": st.dictionaries(st.text(), st.fixed_dictionaries(
    {"methods": st.lists(methods, max_size=3)})), "functions": st.dictionaries(st.text(), methods, max_size=2)},
    optional={"strings": st.lists(st.text()), "other": json_values}))
def test_any_document_of_the_shape_decodes_as_json_loads_does(document):
    for text in (json.dumps(document), json.dumps(document, indent=2, ensure_ascii=False)):
        assert decode_document(text) == json.loads(text)


@pytest.mark.parametrize("text", ['{"types":{"T":{"methods":[{"graph":[[],[],[1,2]]}]}}} x', '{"types":{', "",
                                  '{"types":{"T":{"methods":[{"graph":[[],[],[1 2]]}]}}}', '{"a":1,}'])
def test_what_json_loads_refuses_is_refused(text):
    with pytest.raises(ValueError):
        json.loads(text)
    with pytest.raises(ValueError):
        decode_document(text)


def test_unreadable_output_becomes_a_failed_ir_as_before():
    header = {"schema": "tsinspect.ir/2", "load": "meta", "notes": []}
    extraction = Extraction(Transport(header, b'{"schema":"tsinspect.ir/2","types":{"T":'), None, None)
    ir = extraction_ir(extraction)
    assert ir.load == "failed" and "unreadable output" in ir.error.message
