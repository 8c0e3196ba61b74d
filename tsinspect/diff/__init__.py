"""Trace-vs-script diff (``align``) and structural diff of two archives of one kind (``structural``).

``diff_archives(a, b)`` is the entry point; it returns a ``model.DiffResult``. Torch-free by default
(``astread``: ``code/`` + debug info); with ``use_ir`` the IR of both archives is extracted in child
processes (``irread``) and used when both load.
"""
