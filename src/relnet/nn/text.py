"""Text encoders: an LSTM over word embeddings whose final state stands for a sentence or a question."""

from __future__ import annotations

import torch
from torch import nn


class SequenceEncoder(nn.Module):
    """Embeds padded token sequences and runs an LSTM; returns the state after each sequence's
    last real token.

    Input tokens ``[..., L]`` (0 is padding) and lengths ``[...]``; output ``[..., hidden]``.
    Sequences are padded on the right and the LSTM is causal, so the output at position
    ``length - 1`` is exactly the final state of the unpadded sequence: no packing needed.
    A sequence of length 0 gives zeros.

    An LSTM steps through the longest sequence of what it is given, so on a CPU a batch of mixed
    lengths (bAbI's 1,280 statements a batch, CLEVR's questions of 4 to 40 words) is run as up to
    ``length_groups`` groups of similar length, each as long as its own longest: the same states,
    1.04-1.45x faster steps (benchmarks/lstm_groups.py; packed sequences are slower there). Groups
    hold about ``min_group`` sequences or more. On a GPU the batch runs whole: grouping would cost
    a host sync per group for little gain.
    """

    def __init__(self, embedding: nn.Embedding, hidden: int, length_groups: int = 4, min_group: int = 64):
        super().__init__()
        self.embedding = embedding
        self.lstm = nn.LSTM(embedding.embedding_dim, hidden, batch_first=True)
        self.hidden = hidden
        self.length_groups = length_groups
        self.min_group = min_group

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        leading = tokens.shape[:-1]
        flat_tokens = tokens.reshape(-1, tokens.shape[-1])
        flat_lengths = lengths.reshape(-1)
        groups = min(self.length_groups, len(flat_lengths) // self.min_group)
        if groups > 1 and tokens.device.type == "cpu":
            final = self._in_length_groups(flat_tokens, flat_lengths, groups)
        else:
            final = self._final_states(flat_tokens, flat_lengths)
        return final.reshape(*leading, self.hidden)

    def _in_length_groups(self, tokens: torch.Tensor, lengths: torch.Tensor, groups: int) -> torch.Tensor:
        """Final states of the sequences sorted by length, in ``groups`` runs each trimmed to its
        longest sequence, put back in the input's order."""
        sorted_lengths, order = lengths.sort()
        parts = order.chunk(groups)
        ends = torch.cumsum(torch.tensor([len(part) for part in parts]), 0) - 1
        longest = sorted_lengths[ends].clamp(min=1).tolist()  # one read of all groups' lengths
        final = torch.cat([self._final_states(tokens[part, :length], lengths[part])
                           for part, length in zip(parts, longest)])
        inverse = torch.empty_like(order)
        inverse[order] = torch.arange(len(order), device=order.device)
        return final[inverse]

    def _final_states(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """[M, L] tokens through the LSTM: the state after each one's last real token, [M, hidden]."""
        outputs, _ = self.lstm(self.embedding(tokens))  # [M, L, hidden]
        last = (lengths - 1).clamp(min=0)
        final = outputs[torch.arange(len(last), device=tokens.device), last]
        return final * (lengths > 0).unsqueeze(-1).to(final.dtype)
