# KernelWarehouse MobileNetV2 0.5x, budget 1, on ImageNet-1k with the
# paper's MobileNetV2 recipe: the model of kw1x-mobilenet-v2_8xb32_in1k.py at
# half width.
_base_ = './kw1x-mobilenet-v2_8xb32_in1k.py'

model = dict(backbone=dict(widen_factor=0.5))
