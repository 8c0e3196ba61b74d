"""What an operator or a TorchBind custom class can do when torch runs it: the tables behind the judge.

Names are the ones torch's interpreters dispatch on (``aten::save``, ``quantized::conv2d_prepack``,
``__torch__.torch.classes.quantized.Conv2dPackedParamsBase``), so both the ``code/`` importer's view
(:mod:`tsinspect.safety.resolve`) and the lite loader's operator tables (``bytecode.pkl``) are judged
by the same rules. The hazard lists were drawn from torch 2.13's own registry
(``torch._C._jit_get_all_schemas()``: every op taking a file name, a ``Storage`` or raw strides, every
distributed namespace) and ``tests/test_judge_code.py`` rechecks them against that registry.
"""

from __future__ import annotations

FILE, MEMORY, NETWORK, UNKNOWN, OK = "file_io", "raw_memory", "network", "unknown_op", "ok"

# ops that read or write files (their schemas take a file name), and the names of Python's file and
# archive functions, which are no TorchScript ops (torch fails to compile them) but say what was meant
FILE_OPS = frozenset({"aten::save", "aten::from_file", "debugprims::load_tensor", "aten::load", "aten::open",
                      "aten::_load_for_lite_interpreter", "aten::_save_parameters", "aten::_load_parameters"})
# ops that build views from caller-chosen strides, offsets or storages, or skip bounds checks
MEMORY_OPS = frozenset({
    "aten::as_strided", "aten::as_strided_", "aten::as_strided_copy", "aten::as_strided_scatter", "aten::set_",
    "aten::set", "aten::_reshape_alias", "aten::_reshape_alias_copy", "aten::_nested_view_from_buffer",
    "aten::_nested_view_from_buffer_copy", "aten::_unsafe_index", "aten::_unsafe_index_put",
    "aten::_unsafe_masked_index", "aten::_unsafe_masked_index_put_accumulate", "aten::_sparse_coo_tensor_unsafe",
    "aten::_sparse_csr_tensor_unsafe", "aten::_sparse_csc_tensor_unsafe", "aten::_sparse_bsr_tensor_unsafe",
    "aten::_sparse_bsc_tensor_unsafe", "aten::_sparse_compressed_tensor_unsafe", "aten::_set_storage",
    "prims::as_strided", "prims::as_strided_scatter", "inductor::resize_storage_bytes_", "mkldnn::data_ptr"})
# remote calls and collectives: they reach other processes or the network
NETWORK_OPS = frozenset({"prim::rpc_async", "prim::rpc_sync", "prim::rpc_remote"})
NETWORK_NAMESPACES = frozenset({"c10d", "_c10d_functional", "_c10d_functional_autograd", "c10d_functional",
                                "symm_mem", "_dtensor", "dist_c10d", "dist_rpc", "dist_autograd"})
# namespaces of ops torch itself ships (ops of others come from a library the user loads)
TORCH_NAMESPACES = frozenset({
    "aten", "prim", "prims", "quantized", "_quantized", "quantized_decomposed", "quantization", "mkldnn",
    "mkldnn_prepacked", "onednn", "mkl", "xnnpack", "prepacked", "sparse", "fbgemm", "_nested", "profiler",
    "cuda", "rngprims", "higher_order", "inductor", "_caffe2", "_test", "static_runtime", "onnx",
    "debugprims", "inductor_prims", "_native", "export", "debug_mode_ops", "_inductor_test"}
    | NETWORK_NAMESPACES)
# what load-time code (__setstate__, default arguments, class constants) may call: computing and repacking
LOAD_TIME_NAMESPACES = frozenset({"aten", "prim", "quantized", "_quantized", "quantized_decomposed", "mkldnn",
                                  "mkldnn_prepacked", "onednn", "xnnpack", "prepacked", "sparse", "profiler"})

CUSTOM_CLASS_PREFIX = "__torch__.torch.classes."
OPAQUE_OBJECT = "__torch__.torch.classes.aten.OpaqueObject"
# TorchBind classes whose native __setstate__ only repacks tensors and numbers (what quantized and
# mobile-optimized archives hold); torch 2.13's registry plus XNNPACK's (mobile builds).
BENIGN_STATE_CLASSES = frozenset(CUSTOM_CLASS_PREFIX + n for n in (
    "quantized.Conv2dPackedParamsBase", "quantized.Conv3dPackedParamsBase", "quantized.LinearPackedParamsBase",
    "quantized.EmbeddingPackedParamsBase", "rnn.CellParamsBase", "sparse.LinearPackedParamsBase",
    "mkldnn.ConvOpContext", "xnnpack.LinearOpContext", "xnnpack.Conv2dOpContext",
    "xnnpack.TransposeConv2dOpContext"))
# their methods code/ may call (unpack and friends); anything else on a custom class is unknown
BENIGN_CLASS_METHODS = frozenset({
    "__getstate__", "__setstate__", "unpack", "weight", "bias", "stride", "padding", "output_padding", "dilation",
    "groups", "transpose", "bit_rate", "version"})


def split_op(qualified: str) -> tuple[str, str]:
    """``aten::add.Tensor`` -> (``aten``, ``add``): the overload does not change what an op does here."""
    namespace, _, name = qualified.partition("::")
    return namespace, name.split(".", 1)[0]


def op_hazard(qualified: str) -> tuple[str, str] | None:
    """(kind, why) when running the op can touch files, raw memory or the network; else None."""
    namespace, name = split_op(qualified)
    op = f"{namespace}::{name}"
    if op in FILE_OPS:
        return FILE, "reads or writes files"
    if op in MEMORY_OPS:
        return MEMORY, "reinterprets raw tensor memory or skips bounds checks"
    if op in NETWORK_OPS or namespace in NETWORK_NAMESPACES:
        return NETWORK, "talks to other processes or the network"
    return None


def judge_load_time_op(qualified: str) -> tuple[str, str]:
    """(kind, why) for an op that code run at load time calls: OK only for torch's computing namespaces."""
    hazard = op_hazard(qualified)
    if hazard:
        return hazard
    namespace, name = split_op(qualified)
    if not namespace or not name:
        return UNKNOWN, "not an operator name torch knows"
    if namespace not in TORCH_NAMESPACES:
        return UNKNOWN, f"an op of the unknown namespace '{namespace}' (native code from a library torch does not ship)"
    if namespace not in LOAD_TIME_NAMESPACES:
        return UNKNOWN, f"an op of the namespace '{namespace}', not one load-time code needs"
    return OK, ""


def custom_class_namespace(qualname: str) -> str:
    return qualname[len(CUSTOM_CLASS_PREFIX):].split(".", 1)[0]


def judge_custom_class(qualname: str) -> tuple[str, str]:
    """(verdict, why) for a TorchBind class whose object a pickle restores (its native __setstate__ runs)."""
    if qualname == OPAQUE_OBJECT:
        return "unsafe", ("torch base64-decodes its state and runs Python's pickle.loads on it at load time "
                          "(any Python code)")
    if qualname in BENIGN_STATE_CLASSES:
        return OK, ""
    return "unsafe", ("a TorchBind class whose native __setstate__ the judge does not know: it runs at load "
                      "time and may do anything")


def judge_custom_method(qualname: str, method: str) -> tuple[str, str]:
    """(kind, why) for code calling ``method`` on an object of the TorchBind class ``qualname``."""
    if qualname in BENIGN_STATE_CLASSES and method in BENIGN_CLASS_METHODS:
        return OK, ""
    return UNKNOWN, f"a method of the TorchBind class {qualname[len('__torch__.'):]}, native code the judge cannot see"
