# KernelWarehouse ResNet18, budget 2x, on ImageNet-1k with the paper's
# advanced recipe (as ConvNeXt's): AdamW 300 epochs, lr 4e-3 for a total batch
# of 4096 = 32x128 (--auto-scale-lr rescales it for other batches), weight
# decay 0.05 (none on biases and 1-D parameters), cosine decay, RandAugment,
# mixup, cutmix, random erasing, label smoothing 0.1, temperature over 20
# epochs. The model is that of kw2x-resnet18_8xb32_in1k.py.
_base_ = [
    'mmpretrain::_base_/datasets/imagenet_bs64_swin_224.py',
    './_base_/schedules/kw_imagenet_adamw_cos_300e.py',
    './_base_/imagenet_runtime.py',
]

model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='KWResNet',
        depth=18,
        budget=2.0,
        out_indices=(3, ),
        style='pytorch'),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=512,
        loss=dict(
            type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
        topk=(1, 5)),
    train_cfg=dict(augments=[
        dict(type='Mixup', alpha=0.8),
        dict(type='CutMix', alpha=1.0),
    ]),
)

train_dataloader = dict(batch_size=128)
