# RegNetX-400MF (MMPretrain's, a backbone mmkw did not write) made
# KernelWarehouse by `KWConverted` with the paper's stage rule: the convs of
# one resolution share a warehouse, a conv that lowers the resolution joins
# the previous stage, the grouped 3x3 convs of a stage share a warehouse of
# their own (cells 16 input channels wide, their group width); the stem stays
# plain. Grouped convs make many small cells, and with them large attention
# heads: the non-local basis mapping (0.0625, as the official ResNet50 1/2x)
# keeps the model at 6.21M parameters (plain 4.77M, warehouses 4.73M, the
# attentions 1.43M; without it 8.40M). MMPretrain's RegNetX-400MF recipe
# (SGD nesterov 100 epochs, lr 0.8 for batch 1024, PreciseBN) plus the
# temperature schedule of mmkw's traditional recipe (10 epochs) and, as in
# every mmkw ImageNet config, no weight decay on norms, biases and other 1-D
# parameters. The paper reports no RegNet numbers.
_base_ = 'mmpretrain::regnet/regnetx-400mf_8xb128_in1k.py'
custom_imports = dict(imports=['mmkw'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,
        type='KWConverted',
        backbone=dict(type='mmpretrain.RegNet', arch='regnetx_400mf'),
        budget=1.0,
        rule='stage',
        nonlocal_basis_ratio=0.0625))

optim_wrapper = dict(
    paramwise_cfg=dict(
        norm_decay_mult=0.0, bias_decay_mult=0.0, flat_decay_mult=0.0))

# MMPretrain's PreciseBNHook keeps the scope the base list gave it, so that
# the list builds whichever package inherits this config.
custom_hooks = [
    dict(
        _scope_='mmpretrain',
        type='PreciseBNHook',
        num_samples=8192,
        interval=1,
        priority='ABOVE_NORMAL'),
    dict(type='KWTemperatureHook', epochs=10)
]
