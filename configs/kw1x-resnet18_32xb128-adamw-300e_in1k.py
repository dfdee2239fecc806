# KernelWarehouse ResNet18, budget 1x, on ImageNet-1k with the paper's
# advanced recipe (as ConvNeXt's): AdamW 300 epochs, lr 4e-3 for a total batch
# of 4096 = 32x128 (--auto-scale-lr rescales it for other batches), weight
# decay 0.05 (none on biases and 1-D parameters), cosine decay, RandAugment,
# mixup, cutmix, random erasing, label smoothing 0.1, temperature over 20
# epochs. The model is that of kw1x-resnet18_8xb32_in1k.py.
_base_ = [
    './_base_/models/kw-resnet18.py',
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
