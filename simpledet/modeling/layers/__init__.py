"""Layers shared by backbones and heads: deformable convolution, RoIAlign over FPN levels."""

from simpledet.modeling.layers.deform_conv import DeformConv2d

__all__ = ["DeformConv2d"]
