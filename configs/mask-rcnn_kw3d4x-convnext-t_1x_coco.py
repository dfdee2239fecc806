# Mask R-CNN with a KernelWarehouse ConvNeXt-Tiny (b = 3/4) backbone, COCO 1x.
# Paper: box AP 44.1, mask AP 40.2. The paper's 3/4x model: b = 1/2 with
# half-gcd cells on the pointwise warehouses of the last two stages, b = 1
# elsewhere (no official config or checkpoint exists; pretrain it with
# configs/kw3d4x-convnext-tiny_32xb128_in1k.py). Everything else as
# mask-rcnn_kw-convnext-t_1x_coco.py.
_base_ = './mask-rcnn_kw-convnext-t_1x_coco.py'

pretrained = 'checkpoints/kw3d4x-convnext-tiny_in1k.pth'
model = dict(
    backbone=dict(
        budget=dict(
            _delete_=True, default=1.0, pointwise=(1.0, 1.0, 0.5, 0.5)),
        init_cfg=dict(
            type='Pretrained', checkpoint=pretrained, prefix='backbone.')))
