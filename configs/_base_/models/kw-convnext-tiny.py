# KernelWarehouse ConvNeXt-Tiny classifier for ImageNet-1k at budget 1x, as
# MMPretrain's convnext-tiny.py: label smoothing, mixup and cutmix belong to
# the model (ConvNeXt is trained with the advanced recipe only). Official:
# kw1x_convnext_tiny.json. The explicit scope builds it in MMPretrain
# whichever package inherits it.
model = dict(
    _scope_='mmpretrain',
    type='ImageClassifier',
    backbone=dict(
        type='KWConvNeXt',
        arch='tiny',
        budget=1.0,
        # The official KW config uses drop path 0.3 (its plain ConvNeXt-T
        # config, like MMPretrain's, uses 0.1).
        drop_path_rate=0.3),
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=768,
        loss=dict(
            type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
        init_cfg=None),
    # Plain convs and linears; KWConvNeXt initialises its attention and
    # warehouses again afterwards, as the official code does.
    init_cfg=dict(
        type='TruncNormal', layer=['Conv2d', 'Linear'], std=.02, bias=0.),
    train_cfg=dict(augments=[
        dict(type='Mixup', alpha=0.8),
        dict(type='CutMix', alpha=1.0),
    ]),
)
