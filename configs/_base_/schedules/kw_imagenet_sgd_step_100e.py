# The paper's traditional ResNet recipe: SGD for 100 epochs, batch 256 in
# total, lr 0.1 divided by 10 every 30 epochs, weight decay 1e-4 (none on
# biases, norms and other 1-D parameters), temperature over 10 epochs.
optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.1, momentum=0.9, weight_decay=1e-4),
    paramwise_cfg=dict(
        norm_decay_mult=0.0, bias_decay_mult=0.0, flat_decay_mult=0.0))

param_scheduler = dict(
    type='MultiStepLR', by_epoch=True, milestones=[30, 60, 90], gamma=0.1)

train_cfg = dict(by_epoch=True, max_epochs=100, val_interval=1)
val_cfg = dict()
test_cfg = dict()

custom_hooks = [dict(type='KWTemperatureHook', epochs=10)]

auto_scale_lr = dict(base_batch_size=256)
