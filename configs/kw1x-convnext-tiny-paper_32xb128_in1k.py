# KernelWarehouse ConvNeXt-Tiny 1x with the layout of the paper's appendix
# rather than the released code's: "We partition the 9 blocks in the third
# stage of the ConvNeXt-Tiny backbone into three stages with the equal
# number of blocks", each with its own depthwise and pointwise warehouses
# (warehouse_groups='paper'). With the attention's hidden width at 1/32 of
# the input channels (the released code uses 1/16) the classifier has
# 32,992,964 parameters, the paper's 32.99M; with 1/16 it has 35,918,508.
# The released checkpoint (official layout, 39,370,674) does not load into
# this model. Same advanced recipe as kw1x-convnext-tiny_32xb128_in1k.py.
_base_ = './kw1x-convnext-tiny_32xb128_in1k.py'

model = dict(backbone=dict(warehouse_groups='paper', reduction=0.03125))
