# KernelWarehouse MobileNetV2 1.0x, budget 1/2, on ImageNet-1k with the
# paper's MobileNetV2 recipe (see kw1x-mobilenet-v2_8xb32_in1k.py).
# Layout (hand-tuned, official): stem and depthwise convs KW at 1x, 1x1 convs
# of stages 1-5 plain, stage-6 1x1 convs KW at 1/2x with half-gcd cells, and
# a KW classifier.
_base_ = './kw1x-mobilenet-v2_8xb32_in1k.py'

model = dict(
    backbone=dict(budget=0.5),
    head=dict(
        # The official b=1/2 model's classifier is KW too (own warehouse,
        # cells [1000, 32, 1], b=1/2, reduction 1/32) with dropout 0.1.
        type='KWLinearClsHead',
        budget=0.5,
        cell_ratio=(1, 0.025),
        reduction=0.03125,
        dropout=0.1))
