# KW 4x DeiT-Tiny (paper Table 11) with the recipe of
# kw1x-deit-tiny_4xb256_in1k.py.
_base_ = './kw1x-deit-tiny_4xb256_in1k.py'

model = dict(backbone=dict(budget=4.0))
