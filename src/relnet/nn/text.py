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
    """

    def __init__(self, embedding: nn.Embedding, hidden: int):
        super().__init__()
        self.embedding = embedding
        self.lstm = nn.LSTM(embedding.embedding_dim, hidden, batch_first=True)
        self.hidden = hidden

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        leading = tokens.shape[:-1]
        flat_tokens = tokens.reshape(-1, tokens.shape[-1])
        flat_lengths = lengths.reshape(-1)
        outputs, _ = self.lstm(self.embedding(flat_tokens))  # [M, L, hidden]
        last = (flat_lengths - 1).clamp(min=0)
        final = outputs[torch.arange(len(last), device=tokens.device), last]
        final = final * (flat_lengths > 0).unsqueeze(-1).to(final.dtype)
        return final.reshape(*leading, self.hidden)
