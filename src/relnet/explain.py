"""Pair attribution: which pairs of objects carried a Relation Network's answer.

An RN answers with f(r), where r = Σ_{i,j} w_ij g(o_i, o_j, q) is the aggregate of the pairs'
relation vectors (w_ij = 1 for the paper's sum; 1/n² for a mean; 0 for a pair with a padded
object). Linearize the answer's logit around r: with d = ∂ logit_a / ∂ r,

    d · r = Σ_{i,j} w_ij d · g(o_i, o_j, q) = Σ_{i,j} c_ij

so c_ij = w_ij d · g_ij splits the linearized logit exactly over the ordered pairs, from one
forward and one backward pass, batched, with no loop over pairs (gradient × input taken at the
aggregate, where the RN is a plain sum). The remainder logit_a - d · r is what f adds on its own
(its biases, seen through its ReLU pattern at r); it belongs to no pair. Leave-one-pair-out would
need N² forward passes of f and does not add up to anything; the linearization is exact for the
logit's first-order change when a pair's relation vector is removed (logit_a(r - g_ij) ≈
logit_a(r) - c_ij for the small share one pair has of r).

A softmax does not change when every logit moves by the same amount, so part of one logit's
attribution changes nothing; ``versus="runner-up"`` explains the margin logit_a - logit_b over the
second most probable answer b instead (the same algebra with d = ∂(logit_a - logit_b) / ∂ r):
why this answer rather than the next best. `relnet explain` and `relnet serve` show that margin.

Each object's share is the sum of its pairs, a pair split evenly between its two objects (a pair
(i, i) goes wholly to i), so the shares also add up to d · r.

A model may call its RN several times on the same objects in the same order, e.g. once per mirror
or turn of a scene with the answers averaged (the physics RNs with ``model.symmetries=d4``). Then
each call k has its own aggregate r_k and direction d_k = ∂ logit_a / ∂ r_k (which carries the
1/8 of the mean), and c_ij = Σ_k w_ij d_k · g_k(o_i, o_j, q) adds up to Σ_k d_k · r_k: pair (i, j)
is the same two objects in every call.

    from relnet.explain import pair_attribution
    result = pair_attribution(model, inputs)      # inputs: the model's keyword arguments
    result.pairs[0]                               # [N, N] contributions of example 0
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch
from torch import nn

from relnet.rn import RelationNetwork


@dataclass
class PairAttribution:
    """The attribution of a batch of B examples over N objects each."""

    answer: torch.Tensor  # [B] the class explained (the model's answer unless one was asked for)
    versus: torch.Tensor | None  # [B] the class whose logit is subtracted, if any
    probabilities: torch.Tensor  # [B, C] softmax of the model's output ([B, 1] sigmoid for a single logit)
    logit: torch.Tensor  # [B] the explained value: the answer's logit, or its margin over ``versus``
    linearized: torch.Tensor  # [B] d · r, which ``pairs`` add up to
    pairs: torch.Tensor  # [B, N, N] contribution of the ordered pair (i, j)
    objects: torch.Tensor  # [B, N] each object's share
    real: torch.Tensor  # [B, N] True for real objects, False for padding


def find_relation_network(model: nn.Module) -> RelationNetwork:
    """The one RelationNetwork inside ``model`` (an error naming the model otherwise)."""
    found = [module for module in model.modules() if isinstance(module, RelationNetwork)]
    if len(found) != 1:
        what = "no RelationNetwork" if not found else f"{len(found)} RelationNetworks"
        raise ValueError(f"{type(model).__name__} has {what}; pair attribution explains a model with exactly one")
    return found[0]


def pair_attribution(model: nn.Module, inputs: dict[str, torch.Tensor], answer: torch.Tensor | None = None,
                     versus: str | torch.Tensor | None = None) -> PairAttribution:
    """Attribute the logit of ``answer`` (default: the model's own answer) over the object pairs
    of the model's RN, for a batch given as the model's keyword arguments; with ``versus`` (a
    class per example, or "runner-up" for the most probable other answer), the margin of the
    answer's logit over that class's.

    The model may call its RN (``rn(...)``) or only its aggregate (``rn.relations(...)``) with a
    head of its own, once or several times on the same objects (their pairs are added up). A
    model with a single output logit (binary, BCE) has its logit explained
    (``answer`` is 1 where it is positive). Runs in eval mode (dropout off), in the parameters'
    dtype without autocast; the model's mode is restored afterwards."""
    rn = find_relation_network(model)
    calls: list[dict[str, torch.Tensor]] = []  # the arguments and aggregate of each call of the RN
    signature = inspect.signature(rn.relations)
    aggregate_relations = rn.relations

    def relations_as_a_leaf(*args, **kwargs):
        # The aggregate r is replaced by a leaf, so that one backward pass gives d = ∂ value / ∂ r.
        call = dict(signature.bind(*args, **kwargs).arguments)
        call["aggregate"] = aggregate_relations(*args, **kwargs).detach().requires_grad_(True)
        calls.append(call)
        return call["aggregate"]

    was_training = model.training
    model.eval()
    rn.relations = relations_as_a_leaf  # an instance attribute: forward's self.relations finds it
    try:
        with torch.enable_grad(), torch.autocast(next(model.parameters()).device.type, enabled=False):
            outputs = model(**inputs)
            _check_calls(model, calls)
            chosen, other, logit = _explained_value(outputs.float(), answer, versus)
            directions = torch.autograd.grad(logit.sum(), [call["aggregate"] for call in calls], allow_unused=True)
            with torch.no_grad():  # no autocast: the pairs must add up to what the forward pass summed
                directions = [torch.zeros_like(call["aggregate"]) if direction is None else direction.float()
                              for call, direction in zip(calls, directions)]
                pairs = sum(_pair_contributions(rn, call, direction) for call, direction in zip(calls, directions))
                linearized = sum((direction * call["aggregate"].detach().float()).sum(-1)
                                 for call, direction in zip(calls, directions))
    finally:
        del rn.relations
        model.train(was_training)
    padding = calls[0].get("padding_mask")
    real = torch.ones(pairs.shape[:2], dtype=torch.bool, device=pairs.device) if padding is None else ~padding
    single = outputs.dim() == 1 or outputs.shape[-1] == 1
    probabilities = outputs.detach().float().reshape(len(chosen), -1)
    probabilities = probabilities.sigmoid() if single else probabilities.softmax(-1)
    return PairAttribution(answer=chosen, versus=other, probabilities=probabilities, logit=logit.detach(),
                           linearized=linearized, pairs=pairs, objects=0.5 * (pairs.sum(2) + pairs.sum(1)), real=real)


def _check_calls(model: nn.Module, calls: list[dict]) -> None:
    """The RN was called, and every call saw the same objects (count and padding), so that the
    pairs of all calls can be added up."""
    if not calls:
        raise ValueError(f"{type(model).__name__}'s forward did not call its RelationNetwork")
    first = calls[0]
    for call in calls[1:]:
        padding, first_padding = call.get("padding_mask"), first.get("padding_mask")
        same_padding = padding is first_padding or (
            padding is not None and first_padding is not None and torch.equal(padding, first_padding))
        if call["objects"].shape[:2] != first["objects"].shape[:2] or not same_padding:
            raise ValueError(f"{type(model).__name__} called its RelationNetwork {len(calls)} times on different objects "
                             f"(shapes {tuple(first['objects'].shape)} and {tuple(call['objects'].shape)}, or other padding): "
                             "pair attribution adds the calls up pair by pair, so each must see the same objects in the same order")


def _explained_value(outputs: torch.Tensor, answer, versus):
    """(the class explained, the class subtracted or None, the value explained [B])."""
    if outputs.dim() == 1 or outputs.shape[-1] == 1:  # one logit: its value is the evidence for class 1
        if versus is not None or answer is not None:
            raise ValueError("a model with a single output logit has one value to explain: give no answer or versus")
        logit = outputs.reshape(-1)
        return (logit > 0).long(), None, logit
    if outputs.dim() != 2:
        raise ValueError(f"expected the model's output to be [batch, classes], got shape {tuple(outputs.shape)}")
    chosen = outputs.argmax(-1) if answer is None else answer.to(outputs.device).long()
    logit = outputs.gather(1, chosen.unsqueeze(1)).squeeze(1)
    other = _other_class(outputs, chosen, versus)
    if other is not None:
        logit = logit - outputs.gather(1, other.unsqueeze(1)).squeeze(1)
    return chosen, other, logit


def _other_class(outputs: torch.Tensor, chosen: torch.Tensor, versus) -> torch.Tensor | None:
    if versus is None:
        return None
    if isinstance(versus, str):
        if versus != "runner-up":
            raise ValueError(f"versus must be a class per example or 'runner-up', got {versus!r}")
        if outputs.shape[1] < 2:
            raise ValueError("versus='runner-up' needs a model with at least two answers")
        return outputs.scatter(1, chosen.unsqueeze(1), float("-inf")).argmax(-1)
    return versus.to(outputs.device).long()


def _pair_contributions(rn: RelationNetwork, captured: dict, direction: torch.Tensor) -> torch.Tensor:
    """c_ij = w_ij d · g(o_i, o_j, q), [B, N, N]; rows of the pair grid a chunk at a time, as the
    RN computes them, so memory stays that of the RN's own forward pass."""
    objects = captured["objects"]
    left, right = rn.g.project(objects, captured.get("question"))
    num_objects = objects.shape[1]
    padding = captured.get("padding_mask")
    weights = torch.ones(objects.shape[:2], device=objects.device) if padding is None else (~padding).float()
    chunk = rn.pair_chunk_size or max(num_objects, 1)
    rows = [torch.einsum("bijh,bh->bij", rn.g.pairs(left[:, start:start + chunk], right).float(), direction)
            for start in range(0, num_objects, chunk)]
    pairs = torch.cat(rows, dim=1) if rows else direction.new_zeros(len(objects), 0, 0)
    pairs = pairs * weights.unsqueeze(2) * weights.unsqueeze(1)
    if not rn.self_pairs:
        pairs = pairs * (1 - torch.eye(num_objects, device=pairs.device))
    if rn.aggregation == "mean":
        valid = weights.sum(1)
        count = valid * valid if rn.self_pairs else valid * (valid - 1)
        pairs = pairs / count.clamp(min=1).view(-1, 1, 1)
    return pairs
