# KW 3/4x DeiT-Small (paper Table 11) with the recipe of
# kw1x-deit-small_4xb256_in1k.py: the value warehouses at b = 1, the MLP
# warehouses at b = 1/2 (the split that gives the paper's 19.23M; see README).
_base_ = './kw1x-deit-small_4xb256_in1k.py'

model = dict(backbone=dict(budget=dict(_delete_=True, value=1.0, mlp=0.5)))
