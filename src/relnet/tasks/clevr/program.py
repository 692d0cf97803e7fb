"""CLEVR's functional programs: one executor for generated questions and for `relnet data clevr-verify`.

A program is a list of nodes in dependency order; each node names a ``function``, the ``inputs``
(indices of earlier nodes) and ``value_inputs`` (attribute values, relation names), as in the
official question files. The generator's templates use fused nodes (``filter_unique``,
``relate_filter_count``, ...) over named parameters; ``expand_template`` turns them into plain
programs.
"""

from __future__ import annotations

from relnet.tasks.clevr.schema import ATTRIBUTES, PARAM_TYPES


class ProgramError(ValueError):
    """A program cannot be executed on a scene (a ``unique`` over a set that is not a singleton,
    an unknown function, inputs of the wrong type)."""


def node_function(node: dict) -> str:
    """The function of a node in either spelling: ``function`` (CLEVR v1.0 files) or ``type`` (templates)."""
    return node["function"] if "function" in node else node["type"]


def node_values(node: dict) -> list:
    return node.get("value_inputs", node.get("side_inputs", []))


def execute(program: list[dict], scene: dict):
    """The value of the program's last node on ``scene`` (the official scene JSON structure).

    Object sets are frozensets of object indices, objects are indices, answers are str/int/bool.
    """
    return node_outputs(program, scene)[-1]


def node_outputs(program: list[dict], scene: dict) -> list:
    """The value of every node of the program on ``scene``, in order."""
    outputs: list = []
    for position, node in enumerate(program):
        function = node_function(node)
        try:
            args = [outputs[i] for i in node["inputs"]]
        except (IndexError, TypeError, KeyError):
            raise ProgramError(f"node {position} ({function}): inputs {node.get('inputs')} do not name earlier nodes") from None
        values = node_values(node)
        outputs.append(apply_function(function, args, values, scene, position))
    if not outputs:
        raise ProgramError("empty program")
    return outputs


def apply_function(function: str, args: list, values: list, scene: dict, position: int = 0):
    """One node: ``function`` on input values ``args`` and value inputs ``values``."""
    objects = scene["objects"]

    def need(types: tuple, count_values: int = 0):
        if len(args) != len(types) or any(not isinstance(a, t) for a, t in zip(args, types)) or len(values) != count_values:
            raise ProgramError(f"node {position} ({function}): expected inputs {[t.__name__ for t in types]} and "
                               f"{count_values} value input(s), got {args!r} and {values!r}")

    if function == "scene":
        need(())
        return frozenset(range(len(objects)))
    if function.startswith("filter_") and function[7:] in ATTRIBUTES:
        need((frozenset,), 1)
        attribute = function[7:]
        return frozenset(i for i in args[0] if objects[i][attribute] == values[0])
    if function == "unique":
        need((frozenset,))
        if len(args[0]) != 1:
            raise ProgramError(f"node {position} (unique): the set holds {len(args[0])} objects, not one")
        return next(iter(args[0]))
    if function == "relate":
        need((int,), 1)
        try:
            return frozenset(scene["relationships"][values[0]][args[0]])
        except (KeyError, IndexError):
            raise ProgramError(f"node {position} (relate): the scene has no relationship {values[0]!r} for object {args[0]}") from None
    if function in ("union", "intersect"):
        need((frozenset, frozenset))
        return args[0] | args[1] if function == "union" else args[0] & args[1]
    if function == "count":
        need((frozenset,))
        return len(args[0])
    if function == "exist":
        need((frozenset,))
        return len(args[0]) > 0
    if function.startswith("query_") and function[6:] in ATTRIBUTES:
        need((int,))
        return objects[args[0]][function[6:]]
    if function.startswith("same_") and function[5:] in ATTRIBUTES:
        need((int,))
        attribute = function[5:]
        value = objects[args[0]][attribute]
        return frozenset(i for i, obj in enumerate(objects) if i != args[0] and obj[attribute] == value)
    if function.startswith("equal_") and function[6:] in ATTRIBUTES:
        need((str, str))
        return args[0] == args[1]
    if function == "equal_object":
        need((int, int))
        return args[0] == args[1]
    if function in ("equal_integer", "less_than", "greater_than"):
        need((int, int))
        a, b = args
        return a == b if function == "equal_integer" else a < b if function == "less_than" else a > b
    raise ProgramError(f"node {position}: unknown function {function!r}")


def answer_text(value) -> str:
    """A program's value as a CLEVR answer string ("yes"/"no", "3", "red")."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, str)):
        return str(value)
    raise ProgramError(f"the program ends in a {type(value).__name__}, not an answer")


# Fused template nodes: (leading basic function or None, trailing basic function or None).
_FUSED = {
    "filter": (None, None), "filter_unique": (None, "unique"), "filter_count": (None, "count"),
    "filter_exist": (None, "exist"), "relate_filter": ("relate", None), "relate_filter_unique": ("relate", "unique"),
    "relate_filter_count": ("relate", "count"), "relate_filter_exist": ("relate", "exist"),
}


def expand_template(nodes: list[dict], param_types: dict[str, str], values: dict[str, str | None]):
    """A template's fused nodes with parameter ``values`` (None = unused) as a plain program.

    Returns the program and, per template node, the index of the program node holding its output.
    """
    program: list[dict] = []
    output_of: list[int] = []

    def add(function, inputs, value_inputs=()):
        program.append({"function": function, "inputs": list(inputs), "value_inputs": list(value_inputs)})
        return len(program) - 1

    for node in nodes:
        function = node["type"]
        inputs = [output_of[i] for i in node["inputs"]]
        names = node.get("side_inputs", [])
        if function in _FUSED:
            lead, trail = _FUSED[function]
            if lead == "relate":
                current = add("relate", inputs, [values[names[0]]])
                names = names[1:]
            else:
                current = inputs[0]
            for name in names:
                if values.get(name) is not None:
                    current = add(f"filter_{PARAM_TYPES[param_types[name]]}", [current], [values[name]])
            if trail is not None:
                current = add(trail, [current])
            output_of.append(current)  # a filter with no values set passes its input through
        elif function.startswith("filter_") and values.get(names[0]) is None:
            output_of.append(inputs[0])
        else:
            output_of.append(add(function, inputs, [values[name] for name in names]))
    return program, output_of
