# The paper's MobileNetV2 recipe: SGD for 150 epochs, batch 256 in total,
# lr 0.1 with cosine decay, weight decay 4e-5 (none on biases, norms and other
# 1-D parameters), temperature over 10 epochs.
optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.1, momentum=0.9, weight_decay=4e-5),
    paramwise_cfg=dict(
        norm_decay_mult=0.0, bias_decay_mult=0.0, flat_decay_mult=0.0))

param_scheduler = dict(
    type='CosineAnnealingLR', by_epoch=True, T_max=150, begin=0, end=150)

train_cfg = dict(by_epoch=True, max_epochs=150, val_interval=1)
val_cfg = dict()
test_cfg = dict()

custom_hooks = [dict(type='KWTemperatureHook', epochs=10)]

auto_scale_lr = dict(base_batch_size=256)
