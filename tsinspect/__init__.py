"""tsinspect: a TorchScript archive inspector and IR explorer."""

__version__ = "0.1.0"
