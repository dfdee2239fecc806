# KernelWarehouse ResNet18, budget 4x, on ImageNet-1k with the paper's
# traditional recipe (SGD 100 epochs, batch 8x32, temperature over 10 epochs).
_base_ = [
    'mmpretrain::_base_/datasets/imagenet_bs32.py',
    './_base_/schedules/kw_imagenet_sgd_step_100e.py',
    './_base_/imagenet_runtime.py',
]

model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='KWResNet',
        depth=18,
        budget=4.0,
        out_indices=(3, ),
        style='pytorch'),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=512,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
        topk=(1, 5)))
