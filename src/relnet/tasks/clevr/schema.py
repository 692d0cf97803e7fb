"""CLEVR's vocabulary of attributes and answers, and the paper's five question categories."""

from __future__ import annotations

# Attribute values in CLEVR's order; colors are CLEVR's sRGB values.
SHAPES = ("cube", "sphere", "cylinder")
COLORS = {
    "gray": (87, 87, 87),
    "red": (173, 35, 35),
    "blue": (42, 75, 215),
    "green": (29, 105, 20),
    "brown": (129, 74, 25),
    "purple": (129, 38, 192),
    "cyan": (41, 208, 208),
    "yellow": (255, 238, 51),
}
MATERIALS = ("rubber", "metal")
SIZES = {"large": 0.7, "small": 0.35}  # an object's radius in scene units
RELATIONS = ("left", "right", "behind", "front")

ATTRIBUTES = {"size": tuple(SIZES), "color": tuple(COLORS), "material": MATERIALS, "shape": SHAPES}
# Template parameter types and the attribute each one names.
PARAM_TYPES = {"Size": "size", "Color": "color", "Material": "material", "Shape": "shape"}

# The 28 answers: yes/no, counts 0-10, and every attribute value.
ANSWERS = ("yes", "no", *[str(n) for n in range(11)], *SHAPES, *COLORS, *MATERIALS, *SIZES)

# The paper's Table 1 columns, keyed by a program's last function.
CATEGORIES = ("count", "exist", "compare_numbers", "query_attribute", "compare_attribute")
CATEGORY_TITLES = {"count": "Count", "exist": "Exist", "compare_numbers": "Compare Numbers",
                   "query_attribute": "Query Attribute", "compare_attribute": "Compare Attribute"}
_CATEGORY_OF_FUNCTION = {
    "count": "count", "exist": "exist",
    "equal_integer": "compare_numbers", "less_than": "compare_numbers", "greater_than": "compare_numbers",
    **{f"query_{name}": "query_attribute" for name in ATTRIBUTES},
    **{f"equal_{name}": "compare_attribute" for name in ATTRIBUTES},
}


def category_of(last_function: str) -> str:
    """The Table 1 category of a question whose program ends in ``last_function``."""
    try:
        return _CATEGORY_OF_FUNCTION[last_function]
    except KeyError:
        raise ValueError(f"a program ending in {last_function!r} has no Table 1 category; expected one of "
                         f"{', '.join(sorted(_CATEGORY_OF_FUNCTION))}") from None
