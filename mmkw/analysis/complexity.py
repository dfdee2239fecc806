"""FLOPs and parameters of a KW model and of its plain counterpart.

MMEngine's ``FlopAnalyzer`` (what MMPretrain's and MMDetection's
``get_flops.py`` use) traces the model with ``torch.jit``; while it traces,
every KW layer runs the official formulation (see :func:`mmkw.cnn.kw_conv`),
so the counter sees the kernel assembly (``aten::mm``), the attention's
linear layers and the per-sample convolution. MMEngine has no handles for
the attention's pooling and normalisation ops; :data:`KW_FLOP_HANDLES` adds
them (one FLOP per input element, as MMEngine counts
``adaptive_avg_pool2d``). As everywhere in MMEngine, one multiply-add counts
as one FLOP.
"""
import copy
from typing import Dict, Sequence

import torch
import torch.nn as nn
from mmengine.analysis import FlopAnalyzer, parameter_count
from mmengine.analysis.jit_handles import elementwise_flop_counter

from mmkw.cnn import KWConvNd, WarehouseManager, plain_layer_like

__all__ = ['KW_FLOP_HANDLES', 'count_complexity', 'plain_counterpart']

#: The attention's ops MMEngine does not count: the global average pooling
#: (``mean``) and the contrasting-driven normalisation (``abs``, ``sum``,
#: ``div``) with the temperature mix (``addcmul``).
KW_FLOP_HANDLES = {
    op: elementwise_flop_counter(1, 0)
    for op in ('aten::mean', 'aten::abs', 'aten::sum', 'aten::div',
               'aten::addcmul')
}


def plain_counterpart(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every KW layer replaced by the plain layer
    of the same geometry and the warehouses removed: what the warehouses
    stand in for."""
    plain = copy.deepcopy(model)
    for name, module in list(plain.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, KWConvNd):
                setattr(module, child_name, plain_layer_like(child))
            elif isinstance(child, WarehouseManager):
                delattr(module, child_name)
    return plain


def count_complexity(
    model: nn.Module, input_shape: Sequence[int] = (3, 224, 224)
) -> Dict[str, object]:
    """Count FLOPs (multiply-adds) and parameters of ``model`` on one input.

    Args:
        model (nn.Module): Called as ``model(x)`` with ``x`` of shape
            ``[1, *input_shape]`` (in eval mode).
        input_shape (Sequence[int]): Defaults to (3, 224, 224).

    Returns:
        dict: ``flops`` (int), ``params`` (int) and ``by_operator`` (a
        Counter of FLOPs per aten op, without the ``aten::`` prefix).
    """
    was_training = model.training
    model.eval()
    try:
        param = next(model.parameters())
        inputs = (torch.randn(1, *input_shape, device=param.device), )
        analyzer = FlopAnalyzer(model, inputs)
        analyzer.set_op_handle(**KW_FLOP_HANDLES)
        analyzer.unsupported_ops_warnings(False)
        analyzer.uncalled_modules_warnings(False)
        return dict(
            flops=analyzer.total(),
            params=parameter_count(model)[''],
            by_operator=analyzer.by_operator())
    finally:
        model.train(was_training)
