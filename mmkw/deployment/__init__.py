"""Deployment: ONNX export of KW classifiers and detector backbones."""
from .onnx_export import (ExportedClassifier, ExportedFeatures,
                          build_export_model, export_onnx, verify_onnx)

__all__ = [
    'ExportedClassifier', 'ExportedFeatures', 'build_export_model',
    'export_onnx', 'verify_onnx'
]
