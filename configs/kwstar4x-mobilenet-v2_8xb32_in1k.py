# KW*4x MobileNetV2 1.0 (paper Table 17): KW 4x with ODConv's input-channel,
# output-channel and spatial attentions computed from the same pooled
# features as the KW attention (attention_type='kw_star'). 12,506,955
# parameters (paper 12.51M; KW 4x 11,379,382). Same recipe as
# kw4x-mobilenet-v2_8xb32_in1k.py.
_base_ = './kw4x-mobilenet-v2_8xb32_in1k.py'

model = dict(backbone=dict(attention_type='kw_star'))
