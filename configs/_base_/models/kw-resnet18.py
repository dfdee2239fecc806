# KernelWarehouse ResNet18 classifier for ImageNet-1k at budget 1x
# (MMPretrain's resnet18.py with KWResNet); the recipe configs override the
# budget. The explicit scope builds it in MMPretrain whichever package
# inherits it.
model = dict(
    _scope_='mmpretrain',
    type='ImageClassifier',
    backbone=dict(
        type='KWResNet',
        depth=18,
        budget=1.0,
        out_indices=(3, ),
        style='pytorch'),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=512,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
        topk=(1, 5)))
