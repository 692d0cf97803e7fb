"""relnet: Relation Networks (Santoro et al., 2017), their benchmarks, and one engine to train them."""

from relnet.rn import RelationFunction, RelationNetwork

__version__ = "0.1.0"

__all__ = ["RelationFunction", "RelationNetwork", "__version__"]
