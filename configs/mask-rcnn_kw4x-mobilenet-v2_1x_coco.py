# Mask R-CNN with a KernelWarehouse MobileNetV2 1.0x (b = 4) backbone, COCO 1x.
# Paper: box AP 38.0, mask AP 34.9. Everything else as
# mask-rcnn_kw-mobilenet-v2_1x_coco.py (b = 4 gives the expansion and the
# projection 1x1 convs of a stage separate warehouses, as the official model).
# Checkpoint:
#   python tools/model_converters/kw_official_to_mmkw.py \
#       kw4x_mobilenetv2_100.pth checkpoints/kw4x-mobilenet-v2_in1k.pth
_base_ = './mask-rcnn_kw-mobilenet-v2_1x_coco.py'

pretrained = 'checkpoints/kw4x-mobilenet-v2_in1k.pth'
model = dict(
    backbone=dict(
        budget=4.0,
        init_cfg=dict(
            type='Pretrained', checkpoint=pretrained, prefix='backbone.')))
