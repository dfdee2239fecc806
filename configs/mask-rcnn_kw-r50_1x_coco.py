# Mask R-CNN with a KernelWarehouse ResNet50 (b = 1) backbone, fine-tuned on
# COCO with the 1x schedule (12 epochs, batch 16 = 8 GPUs x 2, lr / 10 after
# epochs 8 and 11). Paper (Li & Yao, ICML 2024, Table 5): box AP 41.8,
# mask AP 38.4 (plain ResNet50: 39.6 / 36.4).
#
# As in the official KernelWarehouse detection configs: multi-scale training
# (the DETR / Sparse R-CNN resize-and-crop augmentation), AdamW (lr 1e-4,
# weight decay 0.05) instead of mmdet's default SGD, stage 1
# frozen, BatchNorm in eval mode.
#
# The backbone starts from an ImageNet-pretrained KW model and keeps its
# learnt attention: attention_init=False pins the temperature to 0, so no
# KWTemperatureHook is used. Get the checkpoint with
#   python tools/model_converters/kw_official_to_mmkw.py \
#       kw1x_resnet50.pth checkpoints/kw1x-resnet50_in1k.pth
# from the authors' released kw1x_resnet50.pth, or train one with
#   python tools/train.py configs/kw1x-resnet50_8xb32_in1k.py
# (prefix='backbone.' takes the backbone out of the classifier).
_base_ = 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['mmkw'], allow_failed_imports=False)
default_scope = 'mmdet'

pretrained = 'checkpoints/kw1x-resnet50_in1k.pth'
model = dict(
    backbone=dict(
        _delete_=True,
        type='KWResNet',
        depth=50,
        budget=1.0,
        attention_init=False,  # fine-tuning: temperature 0 throughout
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        frozen_stages=1,
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=True,
        style='pytorch',
        init_cfg=dict(
            type='Pretrained', checkpoint=pretrained, prefix='backbone.')),
    neck=dict(in_channels=[256, 512, 1024, 2048]))

# Multi-scale training: either a resize of the short side to 480-800, or a
# resize to 400-600, a random crop and a resize to 480-800.
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomFlip', prob=0.5),
    dict(
        type='RandomChoice',
        transforms=[[
            dict(
                type='RandomChoiceResize',
                scales=[(480, 1333), (512, 1333), (544, 1333), (576, 1333),
                        (608, 1333), (640, 1333), (672, 1333), (704, 1333),
                        (736, 1333), (768, 1333), (800, 1333)],
                keep_ratio=True)
        ],
                    [
                        dict(
                            type='RandomChoiceResize',
                            scales=[(400, 1333), (500, 1333), (600, 1333)],
                            keep_ratio=True),
                        dict(
                            type='RandomCrop',
                            crop_type='absolute_range',
                            crop_size=(384, 600),
                            allow_negative_crop=True),
                        dict(
                            type='RandomChoiceResize',
                            scales=[(480, 1333), (512, 1333), (544, 1333),
                                    (576, 1333), (608, 1333), (640, 1333),
                                    (672, 1333), (704, 1333), (736, 1333),
                                    (768, 1333), (800, 1333)],
                            keep_ratio=True)
                    ]]),
    dict(type='PackDetInputs')
]
train_dataloader = dict(batch_size=2, dataset=dict(pipeline=train_pipeline))

# The official optimizer: AdamW, and no weight decay on parameters whose name
# contains 'norm' (the KW attention's norm layers; the backbone's BatchNorms
# are named bn*, as in the official code, and keep their decay).
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(
        _delete_=True,
        type='AdamW',
        lr=1e-4,
        betas=(0.9, 0.999),
        weight_decay=0.05),
    paramwise_cfg=dict(custom_keys={'norm': dict(decay_mult=0.0)}))

# 1x schedule of the base config: 12 epochs, linear warm-up over 500
# iterations, lr / 10 after epochs 8 and 11; CocoMetric for bbox and segm.
max_epochs = 12
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(
        type='LinearLR', start_factor=0.001, by_epoch=False, begin=0,
        end=500),
    dict(
        type='MultiStepLR',
        begin=0,
        end=max_epochs,
        by_epoch=True,
        milestones=[8, 11],
        gamma=0.1)
]
val_evaluator = dict(metric=['bbox', 'segm'])
test_evaluator = val_evaluator

# find_unused_parameters stays False: every trainable parameter receives a
# gradient (frozen ones have requires_grad=False). The official configs set
# it, which only adds a graph traversal to every DDP step.
auto_scale_lr = dict(enable=False, base_batch_size=16)
