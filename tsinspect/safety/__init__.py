"""Where untrusted bytes are judged and torch is confined.

``scan`` is the judge behind ``tsinspect scan`` (every pickle torch's loaders could read, zip tricks,
load-time code); ``codescan`` is the static gate that decides whether a torch child may load an archive:
it judges what torch would run at load time, with names resolved as torch's importer does (``resolve``),
the op and TorchBind tables of ``ops``, TorchBind objects in pickles (``torchbind``) and the lite
loader's ``bytecode.pkl`` (``bytecode``). All read archives through :mod:`tsinspect.archive` and never
import torch.
"""
