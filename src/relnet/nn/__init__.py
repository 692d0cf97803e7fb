"""Neural building blocks shared by the benchmarks: MLPs, image encoders and text encoders."""

from relnet.nn.conv import ConvObjects, cell_coordinates, conv_stack, image_to_float
from relnet.nn.mlp import mlp
from relnet.nn.text import SequenceEncoder, WordPermutation, WordSlotEncoder

__all__ = ["ConvObjects", "SequenceEncoder", "WordPermutation", "WordSlotEncoder", "cell_coordinates", "conv_stack", "image_to_float", "mlp"]
