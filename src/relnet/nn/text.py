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

    An LSTM steps through the longest sequence of what it is given, so a batch of mixed lengths
    (CLEVR's questions: 4 to 40 words) is run as up to ``length_groups`` groups of similar length,
    each as long as its own longest: the same states, for about half the LSTM's time on a CPU
    (packed sequences are slower there). Groups keep at least ``min_group`` sequences each.
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
        if groups > 1:
            order = torch.argsort(flat_lengths)
            final = torch.cat([self._final_states(flat_tokens[part], flat_lengths[part])
                               for part in order.chunk(groups)])[torch.argsort(order)]
        else:
            final = self._final_states(flat_tokens, flat_lengths)
        return final.reshape(*leading, self.hidden)

    def _final_states(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """[M, L] tokens trimmed to their longest, through the LSTM: [M, hidden]."""
        tokens = tokens[:, :max(1, int(lengths.max()))] if len(lengths) else tokens
        outputs, _ = self.lstm(self.embedding(tokens))  # [M, L, hidden]
        last = (lengths - 1).clamp(min=0)
        final = outputs[torch.arange(len(last), device=tokens.device), last]
        return final * (lengths > 0).unsqueeze(-1).to(final.dtype)
