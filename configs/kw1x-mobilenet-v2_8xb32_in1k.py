# KernelWarehouse MobileNetV2 1.0x, budget 1x, on ImageNet-1k with the paper's
# MobileNetV2 recipe (SGD 150 epochs, batch 8x32, lr 0.1 cosine, wd 4e-5).
# Layout: every conv KW, 1x1 convs of a stage in one warehouse,
# plain classifier.
_base_ = [
    './_base_/models/kw-mobilenet-v2.py',
    'mmpretrain::_base_/datasets/imagenet_bs32_pil_resize.py',
    './_base_/schedules/kw_imagenet_sgd_cos_150e.py',
    './_base_/imagenet_runtime.py',
]

# The official MobileNetV2 configs lower the temperature over 15 epochs
# (temp_epoch=15), not the 10 of the base schedule.
custom_hooks = [dict(type='KWTemperatureHook', epochs=15)]
