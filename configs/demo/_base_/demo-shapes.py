# The demo data (tools/generate_demo_data.py): 128x128 images of coloured
# circles, squares and triangles with COCO annotations, batch 8, shared by
# the demo detectors. The YOLOX demo also inherits MMDetection's COCO config,
# which defines data_root, train_dataloader and the rest, and MMEngine refuses
# a key that two bases define: those settings are here under demo_* names,
# and each demo assigns them and adds its pipelines. The explicit scopes
# build the datasets and the metric in MMDetection whichever package
# inherits this.
demo_data_root = 'data/demo_shapes/'
metainfo = dict(
    classes=('circle', 'square', 'triangle'),
    palette=[(220, 20, 60), (0, 128, 255), (0, 200, 0)])
batch_size = 8

# num_workers=0: on 2 CPU cores loading in the main process is ~4x faster
# than 2 worker processes competing with the model for the cores.
demo_train_dataloader = dict(
    batch_size=batch_size,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(
        _scope_='mmdet',
        type='CocoDataset',
        data_root=demo_data_root,
        metainfo=metainfo,
        ann_file='annotations/train.json',
        data_prefix=dict(img='train/'),
        filter_cfg=dict(filter_empty_gt=True, min_size=4)))
demo_val_dataloader = dict(
    batch_size=batch_size,
    num_workers=0,
    persistent_workers=False,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        _scope_='mmdet',
        type='CocoDataset',
        data_root=demo_data_root,
        metainfo=metainfo,
        ann_file='annotations/val.json',
        data_prefix=dict(img='val/'),
        test_mode=True))
demo_evaluator = dict(
    _scope_='mmdet',
    type='CocoMetric',
    ann_file=demo_data_root + 'annotations/val.json',
    metric='bbox',
    format_only=False)
