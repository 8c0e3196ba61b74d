"""IR layer: the ``.graph`` IR of every method, extracted by torch in a child process, as plain Python.

``model`` (dataclasses + JSON), ``extract`` (the child; the only module importing torch), ``run`` (the
parent side: safety gate, emptied copy, limits), ``views`` (the def-use index, reachability, op counts),
``fallback`` (an ``ast`` view of ``code/`` for archives torch cannot load).
"""

SCHEMA = "tsinspect.ir/2"  # the document's schema, here for the child, which does not import ``model`` (169 KiB)
