"""Multiply-accumulate count of a model's forward pass, by hooks on Conv2D and Linear.

`paddle.flops` raises TypeError on Paddle 3.3.1 with numpy 2.x, hence this counter. It counts the
MACs of convolutions and fully-connected layers only (the figure papers publish as "FLOPs").
"""
import paddle
import paddle.nn as nn

__all__ = ["count_macs"]


def count_macs(model, input_size=224, batch=1):
    """MACs of one eval forward of `model` on a [batch, 3, input_size, input_size] zero input."""
    total = [0]

    def conv_hook(layer, inputs, output):
        kernel = layer.weight.shape  # [out, in/groups, kh, kw]
        total[0] += int(output.numel()) * kernel[1] * kernel[2] * kernel[3]

    def linear_hook(layer, inputs, output):
        total[0] += int(output.numel()) * layer.weight.shape[0]

    hooks = []
    for layer in model.sublayers(include_self=True):
        if isinstance(layer, nn.Conv2D):
            hooks.append(layer.register_forward_post_hook(conv_hook))
        elif isinstance(layer, nn.Linear):
            hooks.append(layer.register_forward_post_hook(linear_hook))
    was_training = model.training
    model.eval()
    try:
        with paddle.no_grad():
            model(paddle.zeros([batch, 3, input_size, input_size]))
    finally:
        for hook in hooks:
            hook.remove()
        if was_training:
            model.train()
    return total[0]
