# KernelWarehouse MobileNetV2 0.5x, budget 4, on ImageNet-1k with the
# paper's MobileNetV2 recipe: the model of kw4x-mobilenet-v2_8xb32_in1k.py at
# half width.
_base_ = './kw4x-mobilenet-v2_8xb32_in1k.py'

model = dict(backbone=dict(widen_factor=0.5))
