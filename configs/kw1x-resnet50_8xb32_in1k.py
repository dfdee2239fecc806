# KernelWarehouse ResNet50, budget 1, on ImageNet-1k with the paper's
# traditional recipe (SGD 100 epochs, batch 8x32, temperature over 10 epochs).
_base_ = [
    './_base_/models/kw-resnet50.py',
    'mmpretrain::_base_/datasets/imagenet_bs32.py',
    './_base_/schedules/kw_imagenet_sgd_step_100e.py',
    './_base_/imagenet_runtime.py',
]
