# The paper's advanced recipe: AdamW for 300 epochs, lr 4e-3 for a total batch
# of 4096 (scaled with auto_scale_lr), weight decay 0.05 (none on biases,
# norms and other 1-D parameters), 20 warm-up epochs then cosine decay,
# temperature over 20 epochs. Augmentations come from the dataset config and
# the model's train_cfg (mixup/cutmix) and head (label smoothing).
optim_wrapper = dict(
    optimizer=dict(
        type='AdamW', lr=4e-3, weight_decay=0.05, eps=1e-8,
        betas=(0.9, 0.999)),
    paramwise_cfg=dict(
        norm_decay_mult=0.0, bias_decay_mult=0.0, flat_decay_mult=0.0),
    clip_grad=None)

param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=1e-3,
        by_epoch=True,
        end=20,
        convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-6, by_epoch=True, begin=20)
]

train_cfg = dict(by_epoch=True, max_epochs=300, val_interval=1)
val_cfg = dict()
test_cfg = dict()

custom_hooks = [dict(type='KWTemperatureHook', epochs=20)]

auto_scale_lr = dict(base_batch_size=4096)
