"""The Relation Network module (Santoro et al., 2017).

    RN(O, q) = f( aggregate_{i,j} g(o_i, o_j, q) )

Seen as a graph network on the complete graph over the objects, the RN has three
parts, kept separate here:

* the *relation function* g, applied to every ordered pair of objects (the edges),
* the *aggregation* over pairs (sum in the paper, or mean),
* the *output function* f, applied once to the aggregate (the global update).

g's first layer acts on the concatenation [o_i; o_j; q]. It is linear, so it is
computed as A o_i + B o_j + C q: each object is projected once, and the
B x N^2 x (2D + Q) pair tensor is never built. The remaining layers of g run on
all pairs at once as dense matmuls; ``pair_chunk_size`` bounds memory by handling
a few rows of the pair grid at a time (recomputing them in the backward pass). With a
padding mask (and no chunking), only the pairs of real objects are gathered and computed;
with batch norm in g, always, so that its statistics are those of real pairs.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from relnet.nn.mlp import FeatureBatchNorm, mlp

AGGREGATIONS = ("sum", "mean")


class RelationFunction(nn.Module):
    """g: maps every ordered pair (o_i, o_j), conditioned on q, to a relation vector.

    Args:
        object_dim: size D of each object vector.
        question_dim: size Q of the conditioning vector (0 for none).
        widths: output size of each layer of g; every layer is followed by ReLU.
        batch_norm: batch norm (over the pairs) between each layer and its ReLU.
    """

    def __init__(self, object_dim: int, question_dim: int, widths: Sequence[int], batch_norm: bool = False):
        super().__init__()
        if not widths:
            raise ValueError("g needs at least one layer")
        hidden = widths[0]
        self.left = nn.Linear(object_dim, hidden, bias=not batch_norm)  # A o_i + bias (batch norm has its own)
        self.right = nn.Linear(object_dim, hidden, bias=False)  # B o_j
        self.question = nn.Linear(question_dim, hidden, bias=False) if question_dim else None  # C q
        self.first_norm = FeatureBatchNorm(hidden) if batch_norm else nn.Identity()
        self.rest = mlp(hidden, widths[1:], batch_norm=batch_norm) if len(widths) > 1 else nn.Identity()
        self.out_dim = widths[-1]

    def project(self, objects: torch.Tensor, question: torch.Tensor | None):
        """First layer, per object: returns (A o_i + C q + bias, B o_j), each [B, N, H]."""
        left = self.left(objects)
        if self.question is not None:
            left = left + self.question(question).unsqueeze(1)
        return left, self.right(objects)

    def pairs(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        """Relation vectors of the pairs (rows of left) x (all of right): [B, n, N, out]."""
        return self.finish(left.unsqueeze(2) + right.unsqueeze(1))

    def finish(self, first_layer: torch.Tensor) -> torch.Tensor:
        """The rest of g from the first layer's pre-activations [..., H] of some pairs."""
        return self.rest(torch.relu(self.first_norm(first_layer)))


class RelationNetwork(nn.Module):
    """A Relation Network over a set of objects, optionally conditioned on a question.

    Args:
        object_dim: size D of each object vector.
        out_dim: size of the output (e.g. the number of answers).
        question_dim: size Q of the conditioning vector, 0 for an unconditioned RN.
        g_widths: widths of the layers of g (paper: four layers of 256).
        f_widths: widths of the hidden layers of f before its output layer.
        dropout: dropout rate before f's output layer (paper: 0.5 on CLEVR).
        aggregation: "sum" (paper) or "mean" over the valid pairs.
        pair_chunk_size: if set, rows of the pair grid are processed this many at a
            time with activation recomputation, bounding memory to
            O(B * chunk * N * width) instead of O(B * N^2 * width).
        self_pairs: whether the pairs (o_i, o_i) of an object with itself take part
            (the paper's sum runs over all i, j: True).
        batch_norm: batch norm between every layer of g and f and its ReLU (as in the most
            used public bAbI code; the paper has none there). g's statistics are over the
            real pairs of the batch; it cannot be combined with ``pair_chunk_size``.

    Shapes:
        objects [B, N, D]; question [B, Q] (required when question_dim > 0, refused
        otherwise); padding_mask [B, N] bool or None, True where a slot is padding, as in
        ``nn.MultiheadAttention``'s ``key_padding_mask``: a padded object takes part in
        no pair. Returns [B, out_dim]. A set with no objects (N = 0, or every slot padded)
        aggregates to zeros.
    """

    def __init__(
        self,
        object_dim: int,
        out_dim: int,
        question_dim: int = 0,
        g_widths: Sequence[int] = (256, 256, 256, 256),
        f_widths: Sequence[int] = (256, 256),
        dropout: float = 0.0,
        aggregation: str = "sum",
        pair_chunk_size: int | None = None,
        self_pairs: bool = True,
        batch_norm: bool = False,
    ):
        super().__init__()
        if aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {aggregation!r}")
        if pair_chunk_size is not None and pair_chunk_size < 1:
            raise ValueError(f"pair_chunk_size must be a positive integer, got {pair_chunk_size}")
        if batch_norm and pair_chunk_size is not None:
            raise ValueError("batch_norm needs every pair of the batch at once for its statistics: it cannot be "
                             "combined with pair_chunk_size")
        self.object_dim, self.question_dim = object_dim, question_dim
        self.g = RelationFunction(object_dim, question_dim, g_widths, batch_norm)
        self.f = mlp(self.g.out_dim, f_widths, out_dim=out_dim, dropout=dropout, batch_norm=batch_norm)
        self.batch_norm = batch_norm
        self.aggregation = aggregation
        self.pair_chunk_size = pair_chunk_size
        self.self_pairs = self_pairs

    def extra_repr(self) -> str:
        return (f"object_dim={self.object_dim}, question_dim={self.question_dim}, aggregation={self.aggregation!r}, "
                f"self_pairs={self.self_pairs}, pair_chunk_size={self.pair_chunk_size}, batch_norm={self.batch_norm}")

    def relations(self, objects: torch.Tensor, question: torch.Tensor | None = None,
                  padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The aggregated relation vector before f, [B, g_widths[-1]]: the sum (or mean) of
        g(o_i, o_j, q) over the valid ordered pairs. Arguments as for ``forward``."""
        weights = self.check_inputs(objects, question, padding_mask)
        left, right = self.g.project(objects, question)
        batch, num_objects = objects.shape[:2]
        if self.batch_norm and padding_mask is None:  # statistics over exactly the pairs summed
            padding_mask = torch.zeros(batch, num_objects, dtype=torch.bool, device=objects.device)
        if padding_mask is not None and self.pair_chunk_size is None:
            total = self._sum_real_pairs(left, right, padding_mask)
        else:
            total = self._sum_pair_grid(left, right, weights)
        if self.aggregation == "mean":
            valid = objects.new_full((batch, 1), num_objects) if weights is None else weights.sum(1, keepdim=True)
            pairs = valid * valid if self.self_pairs else valid * (valid - 1)
            total = total / pairs.clamp(min=1).to(total.dtype)
        return total

    def check_inputs(self, objects: torch.Tensor, question: torch.Tensor | None,
                     padding_mask: torch.Tensor | None) -> torch.Tensor | None:
        """One clear error for inputs of the wrong shape or kind; the valid objects' weights [B, N]
        (1 real, 0 padding), or None without a mask."""
        if objects.dim() != 3 or objects.shape[2] != self.object_dim:
            raise ValueError(f"objects must be [batch, objects, features={self.object_dim}], got shape "
                             f"{tuple(objects.shape)}")
        batch, num_objects = objects.shape[:2]
        if self.question_dim == 0 and question is not None:
            raise ValueError("got a question, but this RN was built without one (question_dim=0): build it with "
                             "question_dim=Q to condition g on a question")
        if self.question_dim and question is None:
            raise ValueError(f"this RN was built with question_dim={self.question_dim} but got no question")
        if question is not None and tuple(question.shape) != (batch, self.question_dim):
            raise ValueError(f"question must be [batch={batch}, question_dim={self.question_dim}], got shape "
                             f"{tuple(question.shape)}")
        if padding_mask is None:
            return None
        if padding_mask.dtype != torch.bool:
            raise ValueError(f"padding_mask must be a bool tensor (True marks a padded object, as in PyTorch's "
                             f"key_padding_mask), got {padding_mask.dtype}")
        if tuple(padding_mask.shape) != (batch, num_objects):
            raise ValueError(f"padding_mask must be [batch={batch}, objects={num_objects}], got shape "
                             f"{tuple(padding_mask.shape)}")
        return (~padding_mask).to(objects.dtype if objects.is_floating_point() else torch.float)

    def _sum_pair_grid(self, left, right, weights):
        """Sum of g over the whole N x N grid (a chunk of rows at a time), padded pairs weighted 0."""
        batch, num_objects = left.shape[:2]
        total = left.new_zeros(batch, self.g.out_dim)
        chunk = self.pair_chunk_size or max(num_objects, 1)
        for start in range(0, num_objects, chunk):
            rows = slice(start, start + chunk)
            row_weights = None if weights is None else weights[:, rows]
            args = (left[:, rows], right, row_weights, weights)
            if chunk < num_objects and torch.is_grad_enabled():
                part = checkpoint(self._sum_pairs, *args, use_reentrant=False)
            else:
                part = self._sum_pairs(*args)
            total = total + part
        if not self.self_pairs and num_objects:
            # The pairs (i, i) sit on the grid's diagonal: N more pair evaluations, not N^2.
            diagonal = self.g.finish(left + right)  # [B, N, H]
            total = total - (diagonal.sum(1) if weights is None else
                             torch.einsum("bih,bi->bh", diagonal, weights.to(diagonal.dtype)))
        return total

    def _sum_real_pairs(self, left, right, padding_mask):
        """Sum of g over the pairs of real objects only: padded pairs are never computed (CLEVR's
        scenes fill 3 to 10 of 10 slots, so about half the grid is padding)."""
        real = ~padding_mask
        pairs = real.unsqueeze(2) & real.unsqueeze(1)  # [B, N, N]
        if not self.self_pairs:
            pairs &= ~torch.eye(pairs.shape[1], dtype=torch.bool, device=pairs.device)
        sample, i, j = pairs.nonzero(as_tuple=True)
        # index_select on the flattened objects: its backward is an index_add, much faster on a CPU
        # than the accumulating index_put that indexing by (sample, i) backpropagates through.
        num_objects = left.shape[1]
        first_layer = (left.flatten(0, 1).index_select(0, sample * num_objects + i)
                       + right.flatten(0, 1).index_select(0, sample * num_objects + j))
        relations = self.g.finish(first_layer)  # [P, H]
        return relations.new_zeros(len(left), self.g.out_dim).index_add_(0, sample, relations)

    def _sum_pairs(self, left, right, row_weights, col_weights):
        pair_features = self.g.pairs(left, right)  # [B, n, N, H]
        if row_weights is None:
            return pair_features.sum(dim=(1, 2))
        # Sum over j weighted by the weight of j, then over i by that of i: a padded object
        # removes every pair it is in without building a [B, n, N] mask.
        per_row = torch.einsum("bijh,bj->bih", pair_features, col_weights.to(pair_features.dtype))
        return torch.einsum("bih,bi->bh", per_row, row_weights.to(per_row.dtype))

    def forward(self, objects: torch.Tensor, question: torch.Tensor | None = None,
                padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """f of the aggregated relations: [B, out_dim] for objects [B, N, D], question [B, Q]
        (when built with question_dim > 0) and padding_mask [B, N] bool (True = padding)."""
        return self.f(self.relations(objects, question, padding_mask))
