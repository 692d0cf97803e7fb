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
    probabilities: torch.Tensor  # [B, C] softmax of the model's output
    logit: torch.Tensor  # [B] the explained value: the answer's logit, or its margin over ``versus``
    linearized: torch.Tensor  # [B] d · r, which ``pairs`` add up to
    pairs: torch.Tensor  # [B, N, N] contribution of the ordered pair (i, j)
    objects: torch.Tensor  # [B, N] each object's share
    mask: torch.Tensor  # [B, N] True for real objects


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
    answer's logit over that class's. Runs in fp32 and in eval mode (dropout off); the model's
    mode is restored afterwards."""
    rn = find_relation_network(model)
    captured: dict[str, torch.Tensor] = {}
    signature = inspect.signature(rn.forward)

    def capture_rn_inputs(module, args, kwargs):
        captured.update(signature.bind(*args, **kwargs).arguments)

    def make_aggregate_a_leaf(module, args):
        # f's input is the aggregate r: replace it by a leaf, so that one backward pass gives d.
        captured["aggregate"] = args[0].detach().float().requires_grad_(True)
        return (captured["aggregate"],)

    hooks = [rn.register_forward_pre_hook(capture_rn_inputs, with_kwargs=True),
             rn.f.register_forward_pre_hook(make_aggregate_a_leaf)]
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad(), torch.autocast(next(model.parameters()).device.type, enabled=False):
            outputs = model(**inputs).float()
            chosen = outputs.argmax(-1) if answer is None else answer.to(outputs.device).long()
            logit = outputs.gather(1, chosen.unsqueeze(1)).squeeze(1)
            other = _other_class(outputs, chosen, versus)
            if other is not None:
                logit = logit - outputs.gather(1, other.unsqueeze(1)).squeeze(1)
            direction, = torch.autograd.grad(logit.sum(), captured["aggregate"])
            with torch.no_grad():  # still in fp32: the pairs must add up to what the forward pass summed
                pairs = _pair_contributions(rn, captured, direction)
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    mask = captured.get("mask")
    mask = torch.ones(pairs.shape[:2], dtype=torch.bool, device=pairs.device) if mask is None else mask.bool()
    return PairAttribution(answer=chosen, versus=other, probabilities=outputs.detach().softmax(-1), logit=logit.detach(),
                           linearized=(direction * captured["aggregate"].detach()).sum(-1), pairs=pairs,
                           objects=0.5 * (pairs.sum(2) + pairs.sum(1)), mask=mask)


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
    objects = captured["objects"].float()
    question = captured.get("question")
    left, right = rn.g.project(objects, None if question is None else question.float())
    num_objects = objects.shape[1]
    weights = torch.ones(objects.shape[:2], device=objects.device)
    if captured.get("mask") is not None:
        weights = captured["mask"].float()
    chunk = rn.pair_chunk_size or num_objects
    rows = [torch.einsum("bijh,bh->bij", rn.g.pairs(left[:, start:start + chunk], right).float(), direction)
            for start in range(0, num_objects, chunk)]
    pairs = torch.cat(rows, dim=1) * weights.unsqueeze(2) * weights.unsqueeze(1)
    if rn.aggregation == "mean":
        valid = weights.sum(1)
        pairs = pairs / (valid * valid).clamp(min=1).view(-1, 1, 1)
    return pairs
