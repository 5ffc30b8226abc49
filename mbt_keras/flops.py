"""FLOPs counted from the traced TF graph (batch 1), to check the cost claims of 3.2.3 / 4.3.

A multiply-add counts as 2 FLOPs. Ops with a TF profiler `flops` statistic (MatMul,
BatchMatMul, element-wise ops, reductions) use it; Einsum (all of Keras' attention and
EinsumDense projections) and convolutions, which the TF registry does not cover, are
counted here from their static shapes.
"""
import numpy as np
import tensorflow as tf
from tensorflow.python.framework import ops as tf_ops
from tensorflow.python.profiler.internal import flops_registry  # noqa: F401  registers stats

from mbt_keras import contract
from mbt_keras.config import ModelConfig
from mbt_keras.model import build_model


def _shape(tensor):
    return [int(d) for d in tensor.shape]


def _einsum_flops(op):
    """2 * product of every index size, for a two-operand contraction."""
    if len(op.inputs) != 2:
        return 0
    lhs = op.get_attr("equation").decode().replace(" ", "").split("->")[0].split(",")
    sizes = {}
    for letters, tensor in zip(lhs, op.inputs):
        sizes.update(zip(letters, _shape(tensor)))
    return 2 * int(np.prod(list(sizes.values()), dtype=np.int64))


def _conv_flops(op):
    kernel = _shape(op.inputs[1])
    return 2 * int(np.prod(_shape(op.outputs[0]), dtype=np.int64)) * \
        int(np.prod(kernel[:-1], dtype=np.int64))


_COUNTERS = {"Einsum": _einsum_flops, "Conv2D": _conv_flops, "Conv3D": _conv_flops}


def graph_flops(graph) -> int:
    """Sum of FLOPs of every op in `graph` (shapes must be static)."""
    total = 0
    for op in graph.get_operations():
        if op.type in _COUNTERS:
            total += _COUNTERS[op.type](op)
        else:
            total += tf_ops.get_stats_for_node_def(graph, op.node_def, "flops").value or 0
    return total


def model_flops(model, config: ModelConfig) -> int:
    """FLOPs of one inference forward pass of `model` on a batch of 1."""
    shapes = {contract.INPUT_RGB: (1, config.num_frames, config.image_size, config.image_size, 3),
              contract.INPUT_SPEC: (1, config.spec_frames, config.mel_bins)}
    specs = {m: tf.TensorSpec(shapes[m], tf.float32, name=m) for m in config.modalities}
    graph = tf.function(lambda x: model(x, training=False)).get_concrete_function(specs).graph
    return graph_flops(graph)


def fusion_layer_costs(config: ModelConfig) -> dict:
    """Graph FLOPs of the parts of `config`'s model: stem+head, one unimodal, one fused layer.

    Every unimodal layer costs the same, and so does every fused one, so three small real
    models (L=1 late, L=1 early, L=2 with Lf=1) separate the parts exactly:
    F(1,1) = S + U, F(1,0) = S + V, F(2,1) = S + U + V.
    """
    count = {}
    for layers, lf in ((1, 1), (1, 0), (2, 1)):
        small = config.replace(num_layers=layers, fusion_layer=lf)
        count[layers, lf] = model_flops(build_model(small), small)
    stem_head = count[1, 1] + count[1, 0] - count[2, 1]
    return {"stem_head": stem_head, "unimodal": count[1, 1] - stem_head,
            "fused": count[1, 0] - stem_head}


def flops_by_fusion_layer(config: ModelConfig, fusion_layers) -> dict:
    """{Lf: FLOPs} of `config`'s model for each Lf, assembled from `fusion_layer_costs`."""
    costs = fusion_layer_costs(config)
    return {lf: costs["stem_head"] + lf * costs["unimodal"]
            + (config.num_layers - lf) * costs["fused"] for lf in fusion_layers}
