"""Recall and precision of tsinspect diff on real model code: see __main__.py and pairs.py."""
