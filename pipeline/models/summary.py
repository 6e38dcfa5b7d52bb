"""A torchsummary-style description of a model: each leaf layer's output shape and parameters, and the
multiply-adds of one forward pass counted by torch's FLOP counter."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


@dataclass(frozen=True)
class Layer:
    name: str
    kind: str
    output_shape: tuple[int, ...]
    parameters: int


@dataclass(frozen=True)
class Summary:
    layers: list[Layer]
    parameters: int
    multiply_adds: int  # per image


@torch.no_grad()
def summarize(model: nn.Module, input_size: tuple[int, int, int]) -> Summary:
    """Run one zero image of `input_size` (C, H, W) through `model` in eval mode and describe it."""
    layers: list[Layer] = []

    def record(name: str):
        def hook(module: nn.Module, _inputs, output) -> None:
            shape = tuple(output.shape) if isinstance(output, torch.Tensor) else ()
            own = sum(p.numel() for p in module.parameters(recurse=False))
            layers.append(Layer(name, type(module).__name__, shape, own))
        return hook

    leaves = [(name, m) for name, m in model.named_modules() if name and not list(m.children())]
    handles = [m.register_forward_hook(record(name)) for name, m in leaves]
    try:
        model.eval()
        with FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, *input_size))
    finally:
        for handle in handles:
            handle.remove()
    return Summary(layers, sum(p.numel() for p in model.parameters()), counter.get_total_flops() // 2)
