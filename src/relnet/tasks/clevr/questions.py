"""Questions for CLEVR scenes from templates in the official CLEVR template format.

A template is a family of questions: phrasings with parameters (``<Z>`` size, ``<C>`` color,
``<M>`` material, ``<S>`` shape, ``<R>`` relation), a program of fused nodes over those
parameters, and constraints (``NULL``: the parameter stays empty; ``OUT_NEQ``: two nodes
differ; ``NEQ``: two parameters differ). Parameters are chosen while the program runs on the
scene, so a ``unique`` is asked only about an object the words single out, and every word of a
filter narrows the set it filters. Per family, answers that are already frequent are rejected,
so that no category can be answered by its most common answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from relnet.errors import DataError
from relnet.io import read_json_file
from relnet.tasks.clevr.program import _FUSED, ProgramError, answer_text, apply_function, expand_template, node_outputs
from relnet.tasks.clevr.schema import ATTRIBUTES, PARAM_TYPES, RELATIONS, category_of

RELATION_TEXT = {"left": "left of", "right": "right of", "behind": "behind", "front": "in front of"}


@dataclass(frozen=True)
class Template:
    family: int
    filename: str
    text: list[str]
    nodes: list[dict]
    params: dict[str, str]  # name -> type
    constraints: list[dict]
    category: str


def builtin_templates_dir() -> Path:
    return Path(str(resources.files("relnet.tasks.clevr") / "templates"))


# CLEVR v1.0 numbers its 90 families (``question_family_index``) through the template files in this
# order (checked against the released questions), not alphabetically.
CLEVR_FILE_ORDER = ("compare_integer.json", "comparison.json", "three_hop.json", "single_and.json",
                    "same_relate.json", "single_or.json", "one_hop.json", "two_hop.json", "zero_hop.json")


def _file_order(path: Path) -> tuple[int, str]:
    """CLEVR's own files first, in CLEVR's order; any other file after them, by name."""
    known = CLEVR_FILE_ORDER.index(path.name) if path.name in CLEVR_FILE_ORDER else len(CLEVR_FILE_ORDER)
    return known, path.name


def load_templates(directory: str | Path) -> list[Template]:
    """Every template of the ``*.json`` files in ``directory``, numbered by family: the files of
    CLEVR v1.0 in its order (``CLEVR_FILE_ORDER``), then any others sorted by name."""
    directory = Path(directory)
    files = sorted((p for p in directory.glob("*.json") if p.name not in ("synonyms.json", "metadata.json")),
                   key=_file_order)
    if not files:
        raise DataError(f"{directory}: no template files (*.json) found")
    templates = []
    for path in files:
        entries = read_json_file(path, "JSON template file", MAX_SOURCE_BYTES)
        if not isinstance(entries, list):
            raise DataError(f"{path}: expected a JSON list of templates")
        for position, entry in enumerate(entries):
            try:
                nodes = entry["nodes"]
                last = nodes[-1]["type"]
                trailing = _FUSED[last][1] if last in _FUSED else last
                templates.append(Template(
                    family=len(templates), filename=path.name, text=list(entry["text"]), nodes=nodes,
                    params={p["name"]: p["type"] for p in entry["params"]},
                    constraints=list(entry.get("constraints", [])), category=category_of(trailing or "")))
            except (KeyError, IndexError, TypeError, ValueError) as error:
                raise DataError(f"{path}: template {position} is malformed ({error!r}); expected keys text, "
                                f"nodes, params, constraints as in the CLEVR templates") from error
            problem = _template_problem(templates[-1])
            if problem:
                raise DataError(f"{path}: template {position} {problem}")
    return templates


PARAMETER_TYPES = {*PARAM_TYPES, "Relation"}
MAX_SOURCE_BYTES = 64 * 1024 * 1024  # a template, synonyms or metadata file (CLEVR's are a few kB)
_BASIC = {"scene", "unique", "relate", "union", "intersect", "count", "exist", "equal_object", "equal_integer",
          "less_than", "greater_than",
          *(f"{kind}_{attribute}" for kind in ("filter", "query", "same", "equal") for attribute in ATTRIBUTES)}


def _template_problem(template: Template) -> str | None:
    """What makes a template unusable, or None: every reference it makes must resolve."""
    params = template.params
    if not template.text or not all(isinstance(text, str) and text.strip() for text in template.text):
        return "has no text: expected a list of non-empty question texts"
    unknown = sorted(str(kind) for kind in set(params.values()) - PARAMETER_TYPES)
    if unknown:
        return f"has parameters of unknown types {unknown}; expected {sorted(PARAMETER_TYPES)}"
    for index, node in enumerate(template.nodes):
        if not isinstance(node, dict):
            return f"node {index} is {node!r}; expected an object"
        inputs, side = node.get("inputs", []), node.get("side_inputs", [])
        if node.get("type") not in _BASIC | set(_FUSED):
            return f"node {index} has unknown type {node.get('type')!r}"
        if not isinstance(inputs, list) or not all(isinstance(k, int) and 0 <= k < index for k in inputs):
            return f"node {index} takes inputs {inputs!r}; expected earlier nodes (0 to {index - 1})"
        if not isinstance(side, list) or not all(name in params for name in side):
            return f"node {index} names side inputs {side!r} that are not among the parameters {sorted(params)}"
    for constraint in template.constraints:
        kind, names = (constraint.get("type"), constraint.get("params")) if isinstance(constraint, dict) else (None, None)
        if kind == "OUT_NEQ":
            valid = isinstance(names, list) and len(names) == 2 and all(
                isinstance(k, int) and 0 <= k < len(template.nodes) for k in names)
        else:
            valid = kind in ("NULL", "NEQ") and isinstance(names, list) and len(names) == (1 if kind == "NULL" else 2) \
                and all(name in params for name in names)
        if not valid:
            return (f"has constraint {constraint!r}; expected NULL (one parameter), NEQ (two parameters) or OUT_NEQ "
                    f"(two node indices)")
    return None


def load_synonyms(path: str | Path | None) -> dict[str, list[str]]:
    path = Path(path) if path is not None else builtin_templates_dir() / "synonyms.json"
    synonyms = read_json_file(path, "synonyms file", MAX_SOURCE_BYTES)
    if not isinstance(synonyms, dict) or not all(
            isinstance(v, list) and v and all(isinstance(word, str) for word in v) for v in synonyms.values()):
        raise DataError(f"{path}: expected a JSON object mapping each word to a list of synonyms")
    return synonyms


def check_metadata(path: str | Path) -> None:
    """Refuse a metadata file whose attribute values differ from the ones this generator draws."""
    metadata = read_json_file(path, "CLEVR metadata file", MAX_SOURCE_BYTES)
    types = metadata.get("types") if isinstance(metadata, dict) else None
    if not isinstance(types, dict) or not all(v is None or isinstance(v, list) for v in types.values()):
        raise DataError(f"{path}: not a CLEVR metadata file: expected a 'types' object of lists (or null)")
    for type_name, attribute in PARAM_TYPES.items():
        if sorted(types.get(type_name) or []) != sorted(ATTRIBUTES[attribute]):
            raise DataError(f"{path}: type {type_name} lists {types.get(type_name)}; this generator draws "
                            f"{list(ATTRIBUTES[attribute])}")
    if sorted(types.get("Relation") or []) != sorted(RELATIONS):
        raise DataError(f"{path}: type Relation lists {types.get('Relation')}; expected {list(RELATIONS)}")


def instantiate(template: Template, scene: dict, rng: np.random.Generator, tries: int = 20):
    """(parameter values, program, answer) of one question of ``template`` about ``scene``, or None."""
    forced_null = {name for c in template.constraints if c["type"] == "NULL" for name in c["params"]}
    for _ in range(tries):
        try:
            values = _choose_values(template, scene, rng, forced_null)
        except ProgramError:
            continue
        if values is None:
            continue
        program, output_of = expand_template(template.nodes, template.params, values)
        try:
            every = node_outputs(program, scene)
            outputs = [every[i] for i in output_of]
        except ProgramError:
            continue
        if all(_holds(c, values, outputs) for c in template.constraints):
            return values, program, answer_text(outputs[-1])
    return None


def _holds(constraint: dict, values: dict, outputs: list) -> bool:
    kind, params = constraint["type"], constraint["params"]
    if kind == "NULL":
        return values.get(params[0]) is None
    if kind == "OUT_NEQ":
        return outputs[params[0]] != outputs[params[1]]
    if kind == "NEQ":
        a, b = values.get(params[0]), values.get(params[1])
        return a is None or b is None or a != b
    raise ProgramError(f"unknown constraint type {kind!r}")


def _choose_values(template: Template, scene: dict, rng: np.random.Generator, forced_null: set[str]) -> dict | None:
    """Walk the template's nodes on the scene, choosing each parameter when its node runs."""
    objects = scene["objects"]
    values: dict[str, str | None] = {}
    outputs: list = []
    for node in template.nodes:
        function = node["type"]
        names = list(node.get("side_inputs", []))
        inputs = [outputs[i] for i in node["inputs"]]
        if function in _FUSED:
            lead, trail = _FUSED[function]
            if lead == "relate":
                relation = str(rng.choice(RELATIONS))
                values[names[0]] = relation
                current = frozenset(scene["relationships"][relation][inputs[0]])
                names = names[1:]
            else:
                current = inputs[0]
            if trail == "unique":
                current = _single_out(current, names, template, objects, rng, values, forced_null)
                if current is None:
                    return None
                outputs.append(next(iter(current)))
                continue
            current = _narrow(current, names, template, objects, rng, values, forced_null,
                              require_word=trail is None)
            if current is None:
                return None
            outputs.append(len(current) if trail == "count" else bool(current) if trail == "exist" else current)
        else:
            for name in names:
                if name not in values:
                    kind = template.params[name]
                    values[name] = str(rng.choice(RELATIONS if kind == "Relation" else ATTRIBUTES[PARAM_TYPES[kind]]))
            outputs.append(apply_function(function, inputs, [values[n] for n in names], scene))
    return values


def _single_out(candidates, names, template, objects, rng, values, forced_null):
    """Choose attribute words that single out one random object of ``candidates``."""
    if not candidates:
        return None
    target = int(rng.choice(sorted(candidates)))
    current = candidates
    order = [names[i] for i in rng.permutation(len(names))]
    for name in order:
        values.setdefault(name, None)
        if name in forced_null or len(current) == 1:
            continue
        attribute = PARAM_TYPES[template.params[name]]
        narrowed = frozenset(i for i in current if objects[i][attribute] == objects[target][attribute])
        if len(narrowed) < len(current):
            values[name] = objects[target][attribute]
            current = narrowed
    return current if len(current) == 1 else None


def _narrow(candidates, names, template, objects, rng, values, forced_null, require_word: bool):
    """Random attribute words for a filter; each word must narrow the set (no redundant words)."""
    current = candidates
    for name in names:
        values.setdefault(name, None)
        if name in forced_null or rng.random() < 0.5:
            continue
        attribute = PARAM_TYPES[template.params[name]]
        if current and rng.random() < 0.7:
            value = objects[int(rng.choice(sorted(current)))][attribute]
        else:
            value = str(rng.choice(ATTRIBUTES[attribute]))
        narrowed = frozenset(i for i in current if objects[i][attribute] == value)
        if len(narrowed) == len(current):
            return None
        values[name] = value
        current = narrowed
    if require_word and all(values[name] is None for name in names):
        return None
    return current


def question_text(template: Template, values: dict, synonyms: dict[str, list[str]], rng: np.random.Generator) -> str:
    text = str(rng.choice(template.text))
    # Optional words in brackets ("[that is]") are kept half of the time.
    text = re.sub(r"\[([^\]]*)\]", lambda m: m.group(1) if rng.random() < 0.5 else "", text)

    def word(name: str) -> str:
        value = values.get(name)
        if value is None:
            return "thing" if template.params[name] == "Shape" else ""
        if template.params[name] == "Relation" and value not in synonyms:
            return RELATION_TEXT[value]
        return value

    for name in sorted(template.params, key=len, reverse=True):  # <Z2> before <Z>
        text = text.replace(name, word(name))

    def synonym(match):
        word_ = match.group(0)
        if word_ in synonyms:
            return str(rng.choice(synonyms[word_]))
        if word_.endswith("s") and word_[:-1] in synonyms:  # plurals: "things", "cubes"
            return str(rng.choice(synonyms[word_[:-1]])) + "s"
        return word_

    text = re.sub(r"\b[a-z]+\b", synonym, text)
    text = re.sub(r"\s+([?;,.])", r"\1", re.sub(r"\s+", " ", text)).strip()
    text = re.sub(r"\b([Aa]) (?=[aeiou])", r"\1n ", text)
    return text[0].upper() + text[1:]
