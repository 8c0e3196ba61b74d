"""Import-only stand-in for torchvision (PyPI's torchvision does not work with this torch)."""
import enum, importlib.abc, importlib.machinery, sys, types
import torch

class FrozenBatchNorm2d(torch.nn.Module):
    def __init__(self, num_features, eps=1e-5):
        super().__init__()
        self.eps = eps
        for n, v in (("weight", torch.ones), ("bias", torch.zeros), ("running_mean", torch.zeros),
                     ("running_var", torch.ones)):
            self.register_buffer(n, v(num_features))
    def forward(self, x):
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        return x * scale.reshape(1, -1, 1, 1) + (self.bias - self.running_mean * scale).reshape(1, -1, 1, 1)

class InterpolationMode(enum.Enum):
    NEAREST = "nearest"; BILINEAR = "bilinear"; BICUBIC = "bicubic"; BOX = "box"; HAMMING = "hamming"; LANCZOS = "lanczos"; NEAREST_EXACT = "nearest-exact"

class _Stub(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return {"FrozenBatchNorm2d": FrozenBatchNorm2d, "InterpolationMode": InterpolationMode}.get(
            name, type(name, (), {}))

class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path, target=None):
        if name == "torchvision" or name.startswith("torchvision."):
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
    def create_module(self, spec):
        m = _Stub(spec.name); m.__path__ = []; return m
    def exec_module(self, module):
        pass

sys.meta_path.insert(0, _Finder())
