# Mask R-CNN with a KernelWarehouse ResNet18 (b=1) trained FROM SCRATCH on
# the generated demo data (tools/generate_demo_data.py): 128x128 images of
# coloured circles, squares and triangles. The project's main job
# (`make demo` = tools/demo.py) trains and evaluates this config.
#
# Training from scratch uses the attention initialisation (temperature 1,
# the initial cell assignment) and KWTemperatureHook, which lowers the
# temperature linearly to 0 over the first `temperature_epochs` epochs,
# every iteration. The detector is slimmer than the COCO one (128-channel
# FPN and heads, anchors matched to 14-52 px objects, fewer sampled
# proposals) so that training + evaluation take minutes on 2 CPU cores.
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    'mmdet::_base_/default_runtime.py',
    './_base_/demo-shapes.py',
]
custom_imports = dict(imports=['mmkw'], allow_failed_imports=False)
default_scope = 'mmdet'

data_root = _base_.demo_data_root  # tools/demo.py generates the data there
img_scale = (128, 128)
channels = 128

# Schedule: 400 training images / batch 8 = 50 iterations per epoch.
# The temperature falls over the first 4 of 6 epochs and the attention
# layers train at 10x the learning rate (see optim_wrapper). Measured on this
# data: once tau reaches 0 the loss jumps unless the attention has learnt to
# take over from the initial assignment; a 1-epoch ramp then 4 epochs at
# tau = 0 reached bbox/segm mAP 0.09/0.13, a 5-of-6-epoch ramp 0.05/0.04,
# a 4-of-6-epoch ramp 0.22/0.23, and with the 10x attention lr (this
# config) 0.467/0.509.
max_epochs = 6
temperature_epochs = 4

model = dict(
    data_preprocessor=dict(pad_size_divisor=32),
    backbone=dict(
        _delete_=True,
        type='KWResNet',
        depth=18,
        budget=1.0,
        attention_init=True,  # from scratch: tau starts at 1
        out_indices=(0, 1, 2, 3),
        frozen_stages=-1,
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=False,
        style='pytorch',
        init_cfg=None),
    neck=dict(
        in_channels=[64, 128, 256, 512], out_channels=channels, num_outs=5),
    rpn_head=dict(
        in_channels=channels,
        feat_channels=channels,
        # Anchors of 16-256 px over strides 4-64: the objects are 14-52 px.
        anchor_generator=dict(scales=[4])),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=channels),
        bbox_head=dict(
            in_channels=channels, fc_out_channels=256, num_classes=3),
        mask_roi_extractor=dict(out_channels=channels),
        mask_head=dict(
            num_convs=2,
            in_channels=channels,
            conv_out_channels=channels,
            num_classes=3)),
    train_cfg=dict(
        rpn=dict(sampler=dict(num=128)),
        rpn_proposal=dict(nms_pre=1000, max_per_img=300),
        rcnn=dict(sampler=dict(num=128))),
    test_cfg=dict(
        rpn=dict(nms_pre=500, max_per_img=100),
        rcnn=dict(max_per_img=50)))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor'))
]
# The demo data's dataloaders with this detector's pipelines.
train_dataloader = dict(
    _base_.demo_train_dataloader,
    dataset=dict(
        _base_.demo_train_dataloader.dataset, pipeline=train_pipeline))
val_dataloader = dict(
    _base_.demo_val_dataloader,
    dataset=dict(_base_.demo_val_dataloader.dataset, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(_base_.demo_evaluator, metric=['bbox', 'segm'])
test_evaluator = val_evaluator

train_cfg = dict(
    type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=max_epochs)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.999),
                   weight_decay=0.05),
    # No weight decay on norms and biases. The KW attention learns at 10x the
    # lr (no decay) so that it can replace the initial assignment within
    # this short schedule.
    paramwise_cfg=dict(
        norm_decay_mult=0.0,
        bias_decay_mult=0.0,
        custom_keys={'attention': dict(lr_mult=10.0, decay_mult=0.0)}),
    clip_grad=dict(max_norm=10.0, norm_type=2))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=25),
    dict(
        type='CosineAnnealingLR',
        T_max=max_epochs,
        eta_min=1e-5,
        by_epoch=True,
        begin=0,
        end=max_epochs,
        convert_to_iter_based=True)
]
custom_hooks = [
    dict(type='KWTemperatureHook', epochs=temperature_epochs),
    # train/kw_attention/<warehouse>_{own,foreign} scalars: log, visualizers.
    dict(type='KWAttentionStatsHook', interval=50),
]

default_hooks = dict(
    logger=dict(type='LoggerHook', interval=10),
    checkpoint=dict(type='CheckpointHook', interval=max_epochs))
log_processor = dict(window_size=10)
randomness = dict(seed=0)
env_cfg = dict(dist_cfg=dict(backend='gloo'))
auto_scale_lr = dict(enable=False, base_batch_size=_base_.batch_size)
