"""Efficient ConvBN for KW convolutions: ``efficient_conv_bn_eval`` in a
config folds every frozen BatchNorm into the KW convolution before it.

"Efficient ConvBN Blocks for Transfer Learning and Beyond" (Wang et al.,
ICLR 2024): a BatchNorm in eval mode is an affine map, so it can scale the
kernel rows and shift the bias instead of normalising the conv output,
which then need not be kept for backward. For a KW layer the scale goes
to ``out_scale`` of :func:`~mmkw.cnn.kw_conv`: the blocked KW conv applies
it to the output channels (the same as scaling every sample's kernel rows)
and takes its gradient from the kernel gradient, keeping only its input and
attention for backward, so a folded KW ConvBN saves almost nothing.

MMEngine's own pass (``mmengine.model.efficient_conv_bn_eval``) cannot be
reused as it is: it only knows ``nn.modules.conv._ConvNd``, traces KW layers
into their attention, and raises ``KeyError`` on any BatchNorm whose input
is not a module call (as after a traced KW layer). Its Runner calls the
module-level ``turn_on_efficient_conv_bn_eval`` of ``mmengine.runner.runner``
when a config sets ``efficient_conv_bn_eval``, with no registry or hook to
extend, so ``import mmkw`` replaces that name (and the public
``mmengine.model.efficient_conv_bn_eval.turn_on_efficient_conv_bn_eval``
users call directly) with
:func:`turn_on_efficient_conv_bn_eval` here (:mod:`mmkw.compat` lists and
applies the change), which folds plain pairs exactly
as MMEngine does (its own function) and KW pairs as described above.
"""
from operator import attrgetter
from typing import Dict, List, Union

import torch
import torch.fx as fx
import torch.nn as nn
from mmengine.logging import print_log
from mmengine.model.efficient_conv_bn_eval import \
    efficient_conv_bn_eval_control
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd

from mmkw.cnn import KWConvNd

__all__ = [
    'kw_conv_bn_eval_control', 'efficient_conv_bn_eval_graph_transform',
    'turn_on_efficient_conv_bn_eval', 'KWTracer'
]


def kw_conv_bn_eval_control(bn: _BatchNorm, conv: KWConvNd,
                            x: torch.Tensor) -> torch.Tensor:
    """``bn(conv(x))``, with ``bn`` folded into ``conv`` while it is in eval
    mode (BatchNorm in training mode runs unchanged)."""
    if bn.training:
        return bn(conv(x))
    inv_std = torch.rsqrt(bn.running_var + bn.eps)
    scale = inv_std if bn.weight is None else bn.weight * inv_std
    shift = -bn.running_mean * scale
    if conv.bias is not None:
        shift = shift + conv.bias * scale
    if bn.bias is not None:
        shift = shift + bn.bias
    device = x.device.type
    if torch.is_autocast_enabled(device):
        # As MMEngine's fold of a plain conv, whose bias autocast casts with
        # its weight: the output stays in autocast's dtype (a float32 shift
        # would promote it, and every activation after it, to float32).
        dtype = torch.get_autocast_dtype(device)
        scale, shift = scale.to(dtype), shift.to(dtype)
    return conv(x, out_scale=scale, out_bias=shift)


class KWTracer(fx.Tracer):
    """``torch.fx`` tracer that keeps KW layers as single module calls."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return isinstance(m, KWConvNd) or super().is_leaf_module(
            m, module_qualified_name)


_CONTROLS = ((KWConvNd, kw_conv_bn_eval_control),
             (_ConvNd, efficient_conv_bn_eval_control))


def efficient_conv_bn_eval_graph_transform(
        fx_model: fx.GraphModule) -> Dict[str, int]:
    """Replace every conv -> BatchNorm pair of the graph (the conv output
    used by the BatchNorm alone) with one folded call.

    Returns:
        dict: Pairs replaced, ``{'kw': ..., 'plain': ...}``.
    """
    modules = dict(fx_model.named_modules())
    pairs = []
    for node in fx_model.graph.nodes:
        if node.op != 'call_module' or not isinstance(modules[node.target],
                                                      _BatchNorm):
            continue
        source = node.args[0]
        if not isinstance(source, fx.Node) or source.op != 'call_module' \
                or len(source.users) > 1:
            continue
        control = next((fn for cls, fn in _CONTROLS
                        if isinstance(modules[source.target], cls)), None)
        if control is not None:
            pairs.append((source, node, control))
    for conv_node, bn_node, control in pairs:
        with fx_model.graph.inserting_before(conv_node):
            conv = fx_model.graph.get_attr(conv_node.target)
            bn = fx_model.graph.get_attr(bn_node.target)
            fused = fx_model.graph.call_function(control,
                                                 (bn, conv, conv_node.args[0]))
        bn_node.replace_all_uses_with(fused)
        fx_model.graph.erase_node(bn_node)
        fx_model.graph.erase_node(conv_node)
    fx_model.graph.lint()
    fx_model.recompile()
    kw = sum(control is kw_conv_bn_eval_control for *_, control in pairs)
    return dict(kw=kw, plain=len(pairs) - kw)


def turn_on_efficient_conv_bn_eval(model: nn.Module,
                                   modules: Union[List[str], str]) -> None:
    """Fold the frozen BatchNorms of ``model``'s sub-modules ``modules``
    (e.g. ``['backbone']``) into the convolutions before them, KW or plain.

    Same contract as MMEngine's function of that name, which the Runner
    calls for the ``efficient_conv_bn_eval`` config key.
    """
    if isinstance(modules, str):
        modules = [modules]
    for name in modules:
        module = attrgetter(name)(model)
        fx_model = fx.GraphModule(module, KWTracer().trace(module))
        folded = efficient_conv_bn_eval_graph_transform(fx_model)
        module.forward = fx_model.forward
        print_log(
            f'efficient_conv_bn_eval: {name} folds {folded["kw"]} KW and '
            f'{folded["plain"]} plain conv-BN pairs while BN is in eval mode',
            logger='current')
