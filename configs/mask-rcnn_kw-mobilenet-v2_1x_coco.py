# Mask R-CNN with a KernelWarehouse MobileNetV2 1.0x (b = 1) backbone, COCO 1x.
# Paper (Table 5): box AP 36.4, mask AP 33.7 (plain MobileNetV2: 33.8 / 31.7).
# Schedule, multi-scale training and the official AdamW optimizer as
# mask-rcnn_kw-r50_1x_coco.py; as in the official config the FPN takes the
# outputs of layer2, layer3, layer5 and conv2 (24, 32, 96, 1280 channels,
# strides 4-32), the stem and layer1 are frozen and BatchNorm is in eval mode.
# Checkpoint:
#   python tools/model_converters/kw_official_to_mmkw.py \
#       kw1x_mobilenetv2_100.pth checkpoints/kw1x-mobilenet-v2_in1k.pth
# or train one with configs/kw1x-mobilenet-v2_8xb32_in1k.py.
_base_ = './mask-rcnn_kw-r50_1x_coco.py'

pretrained = 'checkpoints/kw1x-mobilenet-v2_in1k.pth'
model = dict(
    backbone=dict(
        _delete_=True,
        type='KWMobileNetV2',
        widen_factor=1.0,
        budget=1.0,
        attention_init=False,  # fine-tuning: temperature 0 throughout
        out_indices=(1, 2, 4, 7),
        frozen_stages=1,
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=True,
        init_cfg=dict(
            type='Pretrained', checkpoint=pretrained, prefix='backbone.')),
    neck=dict(in_channels=[24, 32, 96, 1280]))
