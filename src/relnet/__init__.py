"""relnet: Relation Networks (Santoro et al., 2017), their benchmarks, and one engine to train them."""

__version__ = "0.1.0"

__all__ = ["RelationFunction", "RelationNetwork", "__version__"]


def __getattr__(name: str):
    # The module (and torch with it) loads on first use: the `relnet` command imports this package
    # before its main() runs, and only main() can turn a Ctrl-C while torch loads into a clean exit.
    if name in ("RelationFunction", "RelationNetwork"):
        from relnet import rn

        return getattr(rn, name)
    raise AttributeError(f"module 'relnet' has no attribute {name!r}")
