"""ONNX export of KW models with a dynamic batch axis.

The KW convolution's fast path folds the batch into the groups of one
convolution, which ONNX would freeze at the export batch size. While
``torch.onnx.export`` runs, :func:`mmkw.cnn.kw_conv` records the ``unfold``
+ batched-matmul formulation instead (:func:`mmkw.cnn.kw_conv_unfold`),
whose graph has no batch-sized attribute; eager code keeps the fast path.

What is exported:

- classifiers (MMPretrain): the logits of ``model(x, mode='tensor')``;
- detectors (MMDetection): the backbone and neck, one output per feature
  level. Heads, RoI extraction and NMS are out of scope (MMDeploy's job).

The input is the preprocessed image batch ``[B, 3, H, W]``: the model's
``data_preprocessor`` (mean/std, BGR->RGB) is not part of the graph, as in
MMDeploy.
"""
import os.path as osp
from typing import List, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.runner import load_checkpoint

from mmkw.models import build_model_from_config

__all__ = [
    'ExportedClassifier', 'ExportedFeatures', 'build_export_model',
    'export_onnx', 'verify_onnx'
]


class ExportedClassifier(nn.Module):
    """The logits of an MMPretrain classifier, ``model(x, mode='tensor')``."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.model(inputs, mode='tensor')


class ExportedFeatures(nn.Module):
    """The backbone (and neck) features of an MMDetection detector."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, inputs: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        return tuple(self.model.extract_feat(inputs))


def build_export_model(config: str, checkpoint: str) -> nn.Module:
    """Build the model of an MMPretrain or MMDetection config, load a
    checkpoint and wrap the part that is exported (see the module doc).

    Args:
        config (str): Config file.
        checkpoint (str): Checkpoint file or URL, loaded through MMEngine's
            (mmkw's safe) checkpoint loaders.

    Returns:
        nn.Module: :class:`ExportedClassifier` or :class:`ExportedFeatures`
        in eval mode, taking ``[B, 3, H, W]``.
    """
    cfg = Config.fromfile(config)
    scope = cfg.get('default_scope')
    if scope not in ('mmpretrain', 'mmdet'):
        raise ValueError(
            f'{config!r} has default_scope={scope!r}; ONNX export supports '
            f'MMPretrain classifiers (mmpretrain) and MMDetection detectors '
            f'(mmdet)')
    # Built, not initialised: an init_cfg checkpoint is never fetched; the
    # checkpoint given holds every weight.
    model = build_model_from_config(cfg)
    load_checkpoint(model, checkpoint, map_location='cpu', strict=True)
    model.eval()
    wrapper = ExportedFeatures if scope == 'mmdet' else ExportedClassifier
    return wrapper(model).eval()


def _output_names(model: nn.Module, example: torch.Tensor) -> List[str]:
    with torch.no_grad():
        out = model(example)
    if isinstance(out, torch.Tensor):
        return ['logits']
    return [f'feat{i}' for i in range(len(out))]


def export_onnx(model: nn.Module,
                out_file: str,
                shape: Sequence[int] = (224, 224),
                dynamic_batch: bool = False,
                batch_size: int = 1,
                opset_version: int = 18,
                dynamo: bool = True) -> str:
    """Export ``model`` to ONNX.

    Args:
        model (nn.Module): From :func:`build_export_model`, or any module
            taking ``[B, 3, H, W]``.
        out_file (str): The ``.onnx`` file to write.
        shape (Sequence[int]): Input ``(H, W)``. Defaults to (224, 224).
        dynamic_batch (bool): Make the batch axis dynamic. Defaults to
            False.
        batch_size (int): The fixed batch size when ``dynamic_batch`` is
            False. Defaults to 1.
        opset_version (int): ONNX opset. Defaults to 18.
        dynamo (bool): Use PyTorch's default (``torch.export``-based)
            exporter; False uses its deprecated TorchScript exporter, which
            MMDeploy uses and which is several times faster on large
            graphs. Both record the same KW formulation. Defaults to True.

    Returns:
        str: ``out_file``.
    """
    if len(shape) != 2 or min(shape) < 1:
        raise ValueError(f'shape must be (H, W) with positive sides, got '
                         f'{tuple(shape)!r}')
    if batch_size < 1:
        raise ValueError(f'batch_size must be >= 1, got {batch_size}')
    # A dynamic axis needs an example of size >= 2 (torch.export
    # specialises sizes 0 and 1).
    batch = 2 if dynamic_batch else batch_size
    example = torch.randn(batch, 3, *shape)
    output_names = _output_names(model, example)
    model.eval()
    if dynamo:
        options = dict(external_data=False, verbose=False)
        if dynamic_batch:
            options['dynamic_shapes'] = ({
                0: torch.export.Dim('batch', min=1)
            }, )
    else:
        options = dict(dynamo=False)
        if dynamic_batch:
            options['dynamic_axes'] = {
                name: {
                    0: 'batch'
                }
                for name in ['input'] + output_names
            }
    torch.onnx.export(
        model, (example, ),
        out_file,
        input_names=['input'],
        output_names=output_names,
        opset_version=opset_version,
        **options)
    return out_file


def verify_onnx(model: nn.Module,
                onnx_file: str,
                batch_sizes: Sequence[int] = (1, ),
                shape: Sequence[int] = (224, 224),
                tolerance: float = 1e-4,
                seed: int = 0) -> List[float]:
    """Compare ONNX Runtime with PyTorch on random inputs.

    Args:
        model (nn.Module): The exported module.
        onnx_file (str): Its ONNX file.
        batch_sizes (Sequence[int]): Batch sizes to run. Defaults to (1, ).
        shape (Sequence[int]): Input ``(H, W)``. Defaults to (224, 224).
        tolerance (float): Largest allowed ``max |ort - torch| / max
            |torch|`` of every output. Defaults to 1e-4.
        seed (int): Seed of the random inputs. Defaults to 0.

    Returns:
        list[float]: The largest relative difference at each batch size.

    Raises:
        RuntimeError: If a difference exceeds ``tolerance``.
    """
    import onnxruntime
    if not osp.isfile(onnx_file):
        raise FileNotFoundError(f'ONNX file {onnx_file!r} does not exist')
    session = onnxruntime.InferenceSession(
        onnx_file, providers=['CPUExecutionProvider'])
    input_name = session.get_inputs()[0].name
    gen = torch.Generator().manual_seed(seed)
    errors = []
    for batch in batch_sizes:
        x = torch.randn(batch, 3, *shape, generator=gen)
        with torch.no_grad():
            expected = model(x)
        if isinstance(expected, torch.Tensor):
            expected = (expected, )
        outputs = session.run(None, {input_name: x.numpy()})
        error = max(
            float(
                np.abs(out - ref.numpy()).max() /
                max(float(ref.abs().max()), 1e-12))
            for out, ref in zip(outputs, expected))
        if error > tolerance:
            raise RuntimeError(
                f'ONNX Runtime differs from PyTorch at batch {batch}: '
                f'max relative difference {error:.3g} > {tolerance:g} '
                f'({onnx_file})')
        errors.append(error)
    return errors
