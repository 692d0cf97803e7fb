"""Neural building blocks shared by the benchmarks: MLPs and image encoders."""

from relnet.nn.conv import ConvObjects, cell_coordinates, conv_stack, image_to_float
from relnet.nn.mlp import mlp

__all__ = ["ConvObjects", "cell_coordinates", "conv_stack", "image_to_float", "mlp"]
