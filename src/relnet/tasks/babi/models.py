"""The paper's text RN: each statement of the story, encoded by an LSTM (or its words side by
side) and tagged with its position, is an object; the question's LSTM state conditions every pair."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from relnet.nn.text import SENTENCE_ENCODERS, SequenceEncoder, WordPermutation, WordSlotEncoder
from relnet.rn import RelationNetwork


# The words encoder's slots: bAbI's longest statement has 11 words (one to spare).
SENTENCE_WORDS = 12


class TextRN(nn.Module):
    def __init__(self, num_words: int, num_answers: int, max_story: int, embedding_dim: int = 32,
                 sentence_dim: int = 32, question_dim: int = 32, g_widths: Sequence[int] = (256,) * 4,
                 f_widths: Sequence[int] = (256, 512), dropout: float = 0.0, aggregation: str = "sum",
                 batch_norm: bool = False, sentence_encoder: str = "lstm", sentence_words: int = SENTENCE_WORDS):
        super().__init__()
        self.max_story = max_story
        embedding = nn.Embedding(num_words, embedding_dim, padding_idx=0)
        # One word embedding; statements and questions are read by different encoders. "words" puts
        # a statement's first sentence_words words side by side (sentence_dim is then unused).
        if sentence_encoder == "lstm":
            self.sentence_encoder, object_dim = SequenceEncoder(embedding, sentence_dim), sentence_dim
        elif sentence_encoder == "words":
            self.sentence_encoder = WordSlotEncoder(embedding, sentence_words)
            object_dim = self.sentence_encoder.out_dim
        else:
            raise ValueError(f"sentence_encoder must be one of {SENTENCE_ENCODERS}, got {sentence_encoder!r}")
        self.question_encoder = SequenceEncoder(embedding, question_dim)
        self.rn = RelationNetwork(object_dim + max_story, num_answers, question_dim, g_widths, f_widths, dropout,
                                  aggregation, batch_norm=batch_norm)
        self.num_words, self.num_answers = num_words, num_answers
        # Training-time augmentation, built from the vocabulary by the task (model.permute_words).
        self.word_permutation: WordPermutation | None = None

    def forward(self, story: torch.Tensor, sentence_lengths: torch.Tensor, story_mask: torch.Tensor,
                question: torch.Tensor, question_length: torch.Tensor) -> torch.Tensor:
        """story [B, S, L] word ids, sentence_lengths [B, S], story_mask [B, S] (True for real
        statements, oldest first, padded at the end), question [B, Lq], question_length [B].
        In training, ``word_permutation`` (if set) permutes the interchangeable words first and
        takes the logits back to the original answers."""
        restore = None
        if self.word_permutation is not None:
            story, question, restore = self.word_permutation(story, question, self.num_words, self.num_answers)
        sentences = self.sentence_encoder(story, sentence_lengths)  # [B, S, object_dim]
        # Position tag: one-hot of how many statements back from the question (0 = the latest).
        count = story_mask.sum(1, keepdim=True)
        steps_back = (count - 1 - torch.arange(story.shape[1], device=story.device)).clamp(0, self.max_story - 1)
        objects = torch.cat([sentences, F.one_hot(steps_back, self.max_story).to(sentences.dtype)], dim=-1)
        logits = self.rn(objects, self.question_encoder(question, question_length), padding_mask=~story_mask)
        return logits if restore is None else restore(logits)
