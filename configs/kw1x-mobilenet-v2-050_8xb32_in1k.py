# KernelWarehouse MobileNetV2 0.5x, budget 1x, on ImageNet-1k with the paper's
# MobileNetV2 recipe (SGD 150 epochs, batch 8x32, lr 0.1 cosine, wd 4e-5).
# Layout: every conv KW, 1x1 convs of a stage in one warehouse,
# plain classifier.
_base_ = [
    'mmpretrain::_base_/datasets/imagenet_bs32_pil_resize.py',
    './_base_/schedules/kw_imagenet_sgd_cos_150e.py',
    './_base_/imagenet_runtime.py',
]

model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='KWMobileNetV2', widen_factor=0.5, budget=1.0, out_indices=(7, )),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=1280,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
        topk=(1, 5)))

# The official MobileNetV2 configs lower the temperature over 15 epochs
# (temp_epoch=15), not the 10 of the base schedule.
custom_hooks = [dict(type='KWTemperatureHook', epochs=15)]
