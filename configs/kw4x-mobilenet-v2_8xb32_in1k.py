# KernelWarehouse MobileNetV2 1.0x, budget 4, on ImageNet-1k with the paper's
# MobileNetV2 recipe (see kw1x-mobilenet-v2_8xb32_in1k.py).
# Layout: every conv KW; unlike 1x, the expansion and projection 1x1 convs of
# a stage draw from separate warehouses (the official 4x layout).
_base_ = './kw1x-mobilenet-v2_8xb32_in1k.py'

model = dict(backbone=dict(budget=4.0))
