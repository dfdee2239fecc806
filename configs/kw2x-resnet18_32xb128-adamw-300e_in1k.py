# KernelWarehouse ResNet18, budget 2, on ImageNet-1k with the paper's
# advanced recipe (see kw1x-resnet18_32xb128-adamw-300e_in1k.py).
_base_ = './kw1x-resnet18_32xb128-adamw-300e_in1k.py'

model = dict(backbone=dict(budget=2.0))
