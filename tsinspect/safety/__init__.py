"""Where untrusted bytes are judged and torch is confined.

``scan`` is the judge behind ``tsinspect scan`` (every pickle torch's loaders could read, zip tricks,
load-time code); ``codescan`` is the static gate over ``code/`` that decides whether a torch child may
load an archive. Both read archives through :mod:`tsinspect.archive` and never import torch.
"""
