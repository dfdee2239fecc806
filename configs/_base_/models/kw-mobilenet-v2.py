# KernelWarehouse MobileNetV2 1.0x classifier for ImageNet-1k at budget 1x
# (MMPretrain's mobilenet_v2_1x.py with KWMobileNetV2): every conv KW, the 1x1
# convs of a stage in one warehouse, plain classifier. The recipe configs
# override the budget and the width (the 0.5x model keeps the 1280-channel
# last conv). The explicit scope builds it in MMPretrain whichever package
# inherits it.
model = dict(
    _scope_='mmpretrain',
    type='ImageClassifier',
    backbone=dict(
        type='KWMobileNetV2', widen_factor=1.0, budget=1.0, out_indices=(7, )),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=1280,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
        topk=(1, 5)))
