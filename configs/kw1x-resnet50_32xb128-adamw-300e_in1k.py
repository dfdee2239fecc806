# KernelWarehouse ResNet50, budget 1, on ImageNet-1k with the paper's
# advanced recipe (see kw1x-resnet18_32xb128-adamw-300e_in1k.py). The model is
# that of kw1x-resnet50_8xb32_in1k.py.
_base_ = [
    './_base_/models/kw-resnet50.py',
    'mmpretrain::_base_/datasets/imagenet_bs64_swin_224.py',
    './_base_/schedules/kw_imagenet_adamw_cos_300e.py',
    './_base_/imagenet_runtime.py',
]

# The recipe's part of the model: label smoothing, mixup and cutmix.
model = dict(
    head=dict(
        loss=dict(
            _delete_=True,  # replaces the CrossEntropyLoss, loss_weight too
            type='LabelSmoothLoss',
            label_smooth_val=0.1,
            mode='original')),
    train_cfg=dict(augments=[
        dict(type='Mixup', alpha=0.8),
        dict(type='CutMix', alpha=1.0),
    ]),
)

train_dataloader = dict(batch_size=128)
