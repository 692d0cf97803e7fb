import pytest
import torch

from relnet import RelationNetwork

torch.manual_seed(0)


def naive_rn(rn: RelationNetwork, objects, question=None, padding_mask=None):
    """The definition, literally: concatenate each pair with q, apply g, aggregate, apply f."""
    g = rn.g
    weight = torch.cat([g.left.weight, g.right.weight] + ([g.question.weight] if g.question is not None else []), dim=1)
    outputs = []
    for b in range(objects.shape[0]):
        total, pairs = 0, 0
        for i in range(objects.shape[1]):
            for j in range(objects.shape[1]):
                if padding_mask is not None and (padding_mask[b, i] or padding_mask[b, j]):
                    continue
                if i == j and not rn.self_pairs:
                    continue
                parts = [objects[b, i], objects[b, j]] + ([question[b]] if question is not None else [])
                pair = torch.cat(parts)
                hidden = torch.relu(pair @ weight.T + g.left.bias)
                total = total + g.rest(hidden)
                pairs += 1
        if rn.aggregation == "mean":
            total = total / max(pairs, 1)
        outputs.append(total)
    return rn.f(torch.stack(outputs))


def make_rn(**kwargs):
    defaults = dict(object_dim=5, out_dim=7, question_dim=3, g_widths=(16, 16, 12), f_widths=(16,), dropout=0.0)
    defaults.update(kwargs)
    return RelationNetwork(**defaults).double().eval()


@pytest.mark.parametrize("aggregation", ["sum", "mean"])
@pytest.mark.parametrize("question_dim", [0, 3])
def test_matches_naive_pair_loop(aggregation, question_dim):
    rn = make_rn(question_dim=question_dim, aggregation=aggregation)
    objects = torch.randn(3, 4, 5, dtype=torch.double)
    question = torch.randn(3, 3, dtype=torch.double) if question_dim else None
    torch.testing.assert_close(rn(objects, question), naive_rn(rn, objects, question))


@pytest.mark.parametrize("aggregation", ["sum", "mean"])
def test_mask_matches_naive_and_ignores_padding(aggregation):
    rn = make_rn(aggregation=aggregation)
    objects = torch.randn(2, 6, 5, dtype=torch.double)
    question = torch.randn(2, 3, dtype=torch.double)
    padding = torch.tensor([[0, 0, 0, 1, 1, 1], [0, 0, 0, 0, 0, 1]], dtype=torch.bool)
    out = rn(objects, question, padding)
    torch.testing.assert_close(out, naive_rn(rn, objects, question, padding))
    # Changing padded objects changes nothing; the first example equals an RN over its 3 real objects.
    scrambled = objects.clone()
    scrambled[padding] = torch.randn(int(padding.sum()), 5, dtype=torch.double) * 100
    torch.testing.assert_close(rn(scrambled, question, padding_mask=padding), out)
    torch.testing.assert_close(rn(objects[:1, :3], question[:1]), out[:1])


def test_permutation_invariant():
    rn = make_rn()
    objects = torch.randn(4, 7, 5, dtype=torch.double)
    question = torch.randn(4, 3, dtype=torch.double)
    permuted = objects[:, torch.randperm(7)]
    torch.testing.assert_close(rn(permuted, question), rn(objects, question))


def test_order_of_objects_in_a_pair_matters_but_sum_is_symmetric():
    # g(o_i, o_j) != g(o_j, o_i) in general, yet the sum covers both orders.
    rn = make_rn(question_dim=0)
    a, b = torch.randn(2, 1, 5, dtype=torch.double)
    left, right = rn.g.project(torch.stack([a, b], 1), None)
    ab = rn.g.pairs(left[:, :1], right[:, 1:])
    ba = rn.g.pairs(left[:, 1:], right[:, :1])
    assert not torch.allclose(ab, ba)


@pytest.mark.parametrize("chunk", [1, 3, 64])
def test_chunked_pairs_match_unchunked_values_and_gradients(chunk):
    torch.manual_seed(1)
    full = RelationNetwork(6, 4, question_dim=2, g_widths=(32, 32), f_widths=(32,)).double()
    chunked = RelationNetwork(6, 4, question_dim=2, g_widths=(32, 32), f_widths=(32,), pair_chunk_size=chunk).double()
    chunked.load_state_dict(full.state_dict())
    objects = torch.randn(3, 10, 6, dtype=torch.double)
    question = torch.randn(3, 2, dtype=torch.double)
    padding = torch.rand(3, 10) < 0.3
    out_full, out_chunked = full(objects, question, padding), chunked(objects, question, padding)
    torch.testing.assert_close(out_chunked, out_full)
    out_full.square().sum().backward()
    out_chunked.square().sum().backward()
    for (name, p_full), p_chunked in zip(full.named_parameters(), chunked.parameters()):
        torch.testing.assert_close(p_chunked.grad, p_full.grad, msg=name)


def test_gradients_reach_every_parameter():
    rn = RelationNetwork(5, 3, question_dim=4, dropout=0.5, g_widths=(16, 16), f_widths=(16, 16))
    rn(torch.randn(8, 5, 5), torch.randn(8, 4)).logsumexp(-1).sum().backward()
    for name, parameter in rn.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_bf16_autocast_close_to_fp32():
    rn = RelationNetwork(8, 5, question_dim=4, g_widths=(64, 64, 64), f_widths=(64,))
    objects, question = torch.randn(16, 9, 8), torch.randn(16, 4)
    reference = rn(objects, question)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = rn(objects, question)
    assert low.dtype == torch.bfloat16
    relative = (low.float() - reference).norm() / reference.norm()
    assert relative < 0.05


def test_compiled_module_matches_eager_values_and_gradients():
    """The --compile fast path: torch.compile (inductor) agrees with the plain fp32 module."""
    torch.manual_seed(0)
    rn = RelationNetwork(5, 3, question_dim=4, g_widths=(16, 16), f_widths=(16,))
    objects, question = torch.randn(4, 6, 5), torch.randn(4, 4)
    mask = torch.zeros(4, 6, dtype=torch.bool)  # padding_mask: True marks padding
    mask[0, 4:] = True
    compiled = torch.compile(rn)
    torch.testing.assert_close(compiled(objects, question, mask), rn(objects, question, mask), rtol=1e-4, atol=1e-5)
    compiled(objects, question, mask).sum().backward()
    compiled_grads = [p.grad.clone() for p in rn.parameters()]
    rn.zero_grad()
    rn(objects, question, mask).sum().backward()
    for compiled_grad, parameter in zip(compiled_grads, rn.parameters()):
        torch.testing.assert_close(compiled_grad, parameter.grad, rtol=1e-4, atol=1e-5)


def test_errors_are_clear():
    with pytest.raises(ValueError, match="aggregation"):
        RelationNetwork(3, 2, aggregation="max")
    with pytest.raises(ValueError, match="pair_chunk_size"):
        RelationNetwork(3, 2, pair_chunk_size=0)
    rn = RelationNetwork(3, 2, question_dim=2, g_widths=(8,), f_widths=())
    with pytest.raises(ValueError, match="no question"):
        rn(torch.randn(2, 4, 3))
    with pytest.raises(ValueError, match=r"objects must be \[batch, objects, features=3\], got shape \(4, 3\)"):
        rn(torch.randn(4, 3), torch.randn(4, 2))
    with pytest.raises(ValueError, match=r"features=3\], got shape \(4, 6, 5\)"):
        rn(torch.randn(4, 6, 5), torch.randn(4, 2))


def test_a_question_of_the_wrong_shape_is_refused():
    """Issue 25, defect 1: a [B, 1, Q] question broadcast into a [B, N, out] output."""
    rn = RelationNetwork(2, 5, question_dim=3)
    with pytest.raises(ValueError, match=r"question must be \[batch=4, question_dim=3\], got shape \(4, 1, 3\)"):
        rn(torch.randn(4, 6, 2), torch.randn(4, 1, 3))
    with pytest.raises(ValueError, match=r"question must be \[batch=4"):
        rn(torch.randn(4, 6, 2), torch.randn(3, 3))
    assert rn(torch.randn(4, 6, 2), torch.randn(4, 3)).shape == (4, 5)


def test_a_question_to_an_unconditioned_rn_is_refused():
    """Issue 25, defect 2: the question was silently ignored."""
    rn = RelationNetwork(2, 5)
    with pytest.raises(ValueError, match="built without one"):
        rn(torch.randn(4, 6, 2), torch.randn(4, 3))


@pytest.mark.parametrize("mask", [torch.full((2, 4), 2.0), torch.full((2, 4), 0.5), torch.ones(2, 4, dtype=torch.long)])
def test_only_boolean_padding_masks(mask):
    """Issue 25, defect 3: non-bool masks were used as weights."""
    rn = RelationNetwork(2, 5)
    with pytest.raises(ValueError, match="padding_mask must be a bool tensor"):
        rn(torch.randn(2, 4, 2), padding_mask=mask)
    with pytest.raises(ValueError, match=r"padding_mask must be \[batch=2, objects=4\]"):
        rn(torch.randn(2, 4, 2), padding_mask=torch.zeros(2, 3, dtype=torch.bool))


def test_padding_mask_follows_pytorch_convention():
    """True marks padding, as in nn.MultiheadAttention's key_padding_mask."""
    torch.manual_seed(0)
    rn = make_rn(question_dim=0)
    objects = torch.randn(1, 4, 5, dtype=torch.double)
    padding = torch.tensor([[False, False, True, True]])
    torch.testing.assert_close(rn(objects, padding_mask=padding), rn(objects[:, :2]))


@pytest.mark.parametrize("aggregation", ["sum", "mean"])
def test_empty_sets_aggregate_to_zeros(aggregation):
    """Issue 25, defect 4: N = 0 raised `range() arg 3 must not be zero`."""
    rn = make_rn(aggregation=aggregation, pair_chunk_size=None)
    question = torch.randn(3, 3, dtype=torch.double)
    empty = rn.relations(torch.zeros(3, 0, 5, dtype=torch.double), question)
    assert empty.shape == (3, 12) and empty.eq(0).all()
    torch.testing.assert_close(rn(torch.zeros(3, 0, 5, dtype=torch.double), question), rn.f(empty))
    all_padding = torch.ones(3, 4, dtype=torch.bool)
    assert rn.relations(torch.randn(3, 4, 5, dtype=torch.double), question, all_padding).eq(0).all()


@pytest.mark.parametrize("aggregation", ["sum", "mean"])
@pytest.mark.parametrize("chunk", [None, 2])
def test_self_pairs_can_be_left_out(aggregation, chunk):
    rn = make_rn(aggregation=aggregation, self_pairs=False, pair_chunk_size=chunk)
    objects = torch.randn(2, 5, 5, dtype=torch.double)
    question = torch.randn(2, 3, dtype=torch.double)
    padding = torch.tensor([[False] * 5, [False, False, False, True, True]])
    torch.testing.assert_close(rn(objects, question, padding), naive_rn(rn, objects, question, padding))
    with_self = make_rn(aggregation=aggregation)
    with_self.load_state_dict(rn.state_dict())
    assert not torch.allclose(with_self(objects, question), rn(objects, question))


def test_repr_shows_how_pairs_are_aggregated():
    text = repr(RelationNetwork(4, 2, question_dim=3, aggregation="mean", pair_chunk_size=8, self_pairs=False))
    assert "aggregation='mean'" in text and "pair_chunk_size=8" in text and "self_pairs=False" in text
    assert "object_dim=4, question_dim=3" in text


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_cpu():
    rn = make_rn().float()
    objects, question = torch.randn(4, 6, 5), torch.randn(4, 3)
    torch.testing.assert_close(rn.cuda()(objects.cuda(), question.cuda()).cpu(), rn.cpu()(objects, question),
                               rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("aggregation,self_pairs", [("sum", True), ("mean", True), ("sum", False), ("mean", False)])
def test_real_pairs_only_equals_the_masked_grid(aggregation, self_pairs):
    """With a padding mask the RN computes only the pairs of real objects; the result and its
    gradients are those of the whole grid with padded pairs weighted 0 (the chunked path)."""
    torch.manual_seed(0)
    packed = RelationNetwork(4, 3, question_dim=2, g_widths=[8, 8], f_widths=[8], aggregation=aggregation,
                             self_pairs=self_pairs).double()
    grid = RelationNetwork(4, 3, question_dim=2, g_widths=[8, 8], f_widths=[8], aggregation=aggregation,
                           self_pairs=self_pairs, pair_chunk_size=6).double()
    grid.load_state_dict(packed.state_dict())
    objects, question = torch.randn(5, 6, 4, dtype=torch.double), torch.randn(5, 2, dtype=torch.double)
    counts = torch.tensor([6, 3, 1, 0, 4])  # a full set, partial ones, one object, none
    padding = torch.arange(6) >= counts.unsqueeze(1)
    outputs = [model(objects, question, padding_mask=padding) for model in (packed, grid)]
    torch.testing.assert_close(outputs[0], outputs[1])
    for output in outputs:
        output.square().sum().backward()
    for (name, a), b in zip(packed.named_parameters(), grid.parameters()):
        torch.testing.assert_close(a.grad, b.grad, msg=name)


@pytest.mark.parametrize("self_pairs", [True, False])
def test_batch_norm_statistics_are_those_of_the_real_pairs(self_pairs):
    torch.manual_seed(3)
    rn = RelationNetwork(5, 4, question_dim=3, g_widths=[8, 8], f_widths=[8], batch_norm=True, self_pairs=self_pairs)
    objects, question = torch.randn(2, 3, 5), torch.randn(2, 3)
    # The same two sets, padded to 5 slots with garbage: in training mode too (batch statistics),
    # the output is that of the unpadded batch, so padded pairs take no part in the statistics.
    padded = torch.cat([objects, 100 * torch.randn(2, 2, 5)], dim=1)
    mask = torch.tensor([[False] * 3 + [True] * 2] * 2)
    rn.train()
    torch.testing.assert_close(rn(padded, question, padding_mask=mask), rn(objects, question))
    norms = [m for m in rn.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    assert len(norms) == 3 and "batch_norm=True" in repr(rn)  # two in g, one in f
    rn.eval()  # running statistics: each sample alone gives what it gives in the batch
    together = rn(objects, question)
    torch.testing.assert_close(torch.cat([rn(objects[i:i + 1], question[i:i + 1]) for i in range(2)]), together)
    with pytest.raises(ValueError, match="cannot be combined with pair_chunk_size"):
        RelationNetwork(5, 4, batch_norm=True, pair_chunk_size=2)
