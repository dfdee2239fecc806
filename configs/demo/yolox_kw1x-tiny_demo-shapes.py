# YOLOX-Tiny with a KernelWarehouse CSPDarknet (made by `KWConverted`, the
# paper's stage rule) trained FROM SCRATCH on the generated demo data
# (128x128 images of circles, squares and triangles; tools/
# generate_demo_data.py). Not part of CI: the README gives the command and
# the mAP it reached. The YOLOX recipe is cut down for 2 CPU cores: no
# Mosaic/MixUp, no multi-scale batches, 30 epochs, AdamW; the temperature
# falls over the first 10 epochs and the attention learns at 10x the lr,
# as in the Mask R-CNN demo.
_base_ = ['../yolox_kw1x-s_8xb8-300e_coco.py', './_base_/demo-shapes.py']

data_root = _base_.demo_data_root  # not the COCO base's
img_scale = (128, 128)
max_epochs = 30
temperature_epochs = 10

model = dict(
    data_preprocessor=dict(batch_augments=None),
    backbone=dict(
        backbone=dict(widen_factor=0.375), input_shape=(3, 128, 128)),
    neck=dict(in_channels=[96, 192, 384], out_channels=96),
    bbox_head=dict(in_channels=96, feat_channels=96, num_classes=3))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='Pad', pad_to_square=True, pad_val=dict(img=(114.0, ) * 3)),
    dict(type='FilterAnnotations', min_gt_bbox_wh=(1, 1), keep_empty=False),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='Pad', pad_to_square=True, pad_val=dict(img=(114.0, ) * 3)),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor'))
]
# The demo data's dataloaders with this detector's pipelines, in place of
# the COCO ones of the base.
train_dataloader = dict(
    _base_.demo_train_dataloader,
    _delete_=True,
    dataset=dict(
        _base_.demo_train_dataloader.dataset, pipeline=train_pipeline))
val_dataloader = dict(
    _base_.demo_val_dataloader,
    _delete_=True,
    dataset=dict(_base_.demo_val_dataloader.dataset, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(_base_.demo_evaluator, _delete_=True)
test_evaluator = val_evaluator

train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-3, weight_decay=0.05),
    paramwise_cfg=dict(
        norm_decay_mult=0.0,
        bias_decay_mult=0.0,
        custom_keys={'attention': dict(lr_mult=10.0, decay_mult=0.0)}),
    clip_grad=dict(max_norm=10.0, norm_type=2))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(
        type='CosineAnnealingLR',
        T_max=max_epochs,
        eta_min=2e-5,
        by_epoch=True,
        begin=0,
        end=max_epochs,
        convert_to_iter_based=True)
]
custom_hooks = [dict(type='KWTemperatureHook', epochs=temperature_epochs)]
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=10),
    checkpoint=dict(type='CheckpointHook', interval=max_epochs))
log_processor = dict(window_size=10)
randomness = dict(seed=0)
env_cfg = dict(dist_cfg=dict(backend='gloo'))
auto_scale_lr = dict(enable=False, base_batch_size=_base_.batch_size)
