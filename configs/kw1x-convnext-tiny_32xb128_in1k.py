# KernelWarehouse ConvNeXt-Tiny, budget 1x, on ImageNet-1k with the paper's
# advanced recipe (AdamW 300 epochs, batch 32x128, RandAugment, mixup, cutmix,
# random erasing, label smoothing 0.1, EMA, temperature over 20 epochs), as
# MMPretrain's convnext-tiny_32xb128_in1k. Official: kw1x_convnext_tiny.json.
_base_ = [
    './_base_/models/kw-convnext-tiny.py',
    'mmpretrain::_base_/datasets/imagenet_bs64_swin_224.py',
    './_base_/schedules/kw_imagenet_adamw_cos_300e.py',
    './_base_/imagenet_runtime.py',
]

train_dataloader = dict(batch_size=128)

# The schedule's temperature hook (a list replaces the base list, so it is
# repeated here) plus the EMA of the official recipe (model_ema, decay 0.9999).
custom_hooks = [
    dict(type='KWTemperatureHook', epochs=20),
    dict(type='EMAHook', momentum=1e-4, priority='ABOVE_NORMAL'),
]
