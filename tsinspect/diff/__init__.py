"""Trace-vs-script diff (``align``) and structural diff of two archives of one kind (``structural``).

``diff_archives(a, b)`` is the entry point; it returns a ``model.DiffResult``. Each archive is read torch-free
(``astread``: ``code/`` + debug info); unless ``ir="never"``, the IR of both archives is extracted in child
processes (``irread``) and, when both load, read instead (``irprogram``). ``dynamic`` tells the values some
input or mode can change from those the configuration fixes; only the former make findings.
"""
