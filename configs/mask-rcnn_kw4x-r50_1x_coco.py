# Mask R-CNN with a KernelWarehouse ResNet50 (b = 4) backbone, COCO 1x.
# Paper: box AP 42.4, mask AP 38.9. Everything else as
# mask-rcnn_kw-r50_1x_coco.py. Checkpoint:
#   python tools/model_converters/kw_official_to_mmkw.py \
#       kw4x_resnet50.pth checkpoints/kw4x-resnet50_in1k.pth
_base_ = './mask-rcnn_kw-r50_1x_coco.py'

pretrained = 'checkpoints/kw4x-resnet50_in1k.pth'
model = dict(
    backbone=dict(
        budget=4.0,
        init_cfg=dict(
            type='Pretrained', checkpoint=pretrained, prefix='backbone.')))
