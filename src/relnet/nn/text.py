"""Text encoders: an LSTM over word embeddings whose final state stands for a sentence or a question,
or a sentence's words side by side, each in its own slot."""

from __future__ import annotations

import torch
from torch import nn

from relnet.nn.cpu import native_bf16_cpu

# What a statement can be encoded by (the text RN's model.sentence_encoder). Named here, beside the
# encoders, because the preset checks (tasks/base.py) read it without building a model.
SENTENCE_ENCODERS = ("lstm", "words")


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
        embedded = self.embedding(tokens)
        if tokens.device.type == "cpu" and torch.is_autocast_enabled("cpu") and not native_bf16_cpu():
            # oneDNN has no bf16 LSTM for CPUs without bf16 instructions (it raises): fp32 there.
            with torch.autocast("cpu", enabled=False):
                outputs, _ = self.lstm(embedded.float())  # [M, L, hidden]
        else:
            outputs, _ = self.lstm(embedded)
        last = (lengths - 1).clamp(min=0)
        final = outputs[torch.arange(len(last), device=tokens.device), last]
        return final * (lengths > 0).unsqueeze(-1).to(final.dtype)


class WordSlotEncoder(nn.Module):
    """Encodes padded token sequences as the embeddings of their first ``slots`` words side by
    side: word k fills slot k, and the slots after the sequence's last word are zeros.

    An LSTM's final state has to carry a sentence's first word (a bAbI name) through the rest of
    the sentence before g can compare it with another sentence's; here every word is read where it
    stands. Words after the first ``slots`` are not seen. Input tokens ``[..., L]`` (padded on the
    right) and lengths ``[...]``: the tokens after a sequence's length are read as padding (id 0,
    which embeds to zeros), whatever they hold, as the LSTM encoder ignores them; output
    ``[..., slots * embedding_dim]``.
    """

    def __init__(self, embedding: nn.Embedding, slots: int):
        super().__init__()
        if embedding.padding_idx != 0:
            raise ValueError("WordSlotEncoder needs an embedding with padding_idx=0, so that empty slots are zeros")
        self.embedding = embedding
        self.slots = slots
        self.out_dim = slots * embedding.embedding_dim

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(tokens.shape[-1], device=tokens.device)
        tokens = tokens.masked_fill(positions >= lengths.unsqueeze(-1), 0)[..., :self.slots]
        if tokens.shape[-1] < self.slots:
            tokens = nn.functional.pad(tokens, (0, self.slots - tokens.shape[-1]))
        return self.embedding(tokens).flatten(-2)


class WordPermutation(nn.Module):
    """Training-time augmentation for texts whose words of a class are interchangeable symbols
    (bAbI's names, colours, animals): each example gets its own random permutation of every
    class, applied alike to its story and question, and its answer is permuted with them.

    ``word_classes``: lists of word ids, each a class (no id in two classes); ``answer_classes``:
    for each class, the answer id of each of its words, or None for a class whose words are never
    answers. Training mode only (eval is the identity). ``forward`` returns the permuted story and
    question and a function that takes the model's answer logits on them back to the original
    words' answers, so that the loss against the unpermuted target is the loss of the permuted
    example against its permuted answer. Draws from torch's global random stream, as dropout does.
    """

    def __init__(self, word_classes: list[list[int]], answer_classes: list[list[int] | None]):
        super().__init__()
        if len(word_classes) != len(answer_classes):
            raise ValueError(f"{len(word_classes)} word classes but {len(answer_classes)} answer lists")
        width = max((len(words) for words in word_classes), default=0)
        words, answers = [], []  # [C, K] each, padded: word 0 (the padding id) and answer -1
        for ids, answer_ids in zip(word_classes, answer_classes):
            if len(ids) < 2 or len(set(ids)) < len(ids):
                raise ValueError(f"word class {ids}: expected two or more distinct word ids")
            if answer_ids is not None and len(answer_ids) != len(ids):
                raise ValueError(f"word class {ids}: {len(answer_ids)} answer ids for {len(ids)} words")
            words.append(list(ids) + [0] * (width - len(ids)))
            answers.append((list(answer_ids) if answer_ids is not None else [-1] * len(ids)) + [-1] * (width - len(ids)))
        every = [word for ids in word_classes for word in ids]
        if len(set(every)) < len(every):
            raise ValueError("a word id is in two word classes")
        # Lists, not tensor operations, above: the model may be built on the meta device (memory estimates).
        words = torch.tensor(words, dtype=torch.long).view(len(word_classes), width)
        answers = torch.tensor(answers, dtype=torch.long).view(len(word_classes), width)
        # Not persistent: built from the vocabulary, so checkpoints and exported weights stay as without.
        self.register_buffer("words", words, persistent=False)  # [C, K], 0 = no word (padding id)
        self.register_buffer("answers", answers, persistent=False)  # [C, K], -1 = not an answer

    def forward(self, story: torch.Tensor, question: torch.Tensor, num_words: int, num_answers: int):
        """story [B, ...] and question [B, Lq] word ids -> (story, question, restore), where
        ``restore(logits [B, num_answers])`` is indexed by the unpermuted answers."""
        if not self.training or not len(self.words):
            return story, question, lambda logits: logits
        batch, device = story.shape[0], story.device
        real = self.words > 0
        # A uniform permutation of each class's real words per example: argsort of random keys,
        # the padding's keys above every real one so that it stays at the end.
        keys = torch.rand(batch, *self.words.shape, device=device).masked_fill(~real, 2.0)
        order = keys.argsort(-1)
        # Word words[c, k] becomes words[c, order[b, c, k]], and its answer moves with it.
        words = self.words.expand(batch, -1, -1)
        replaced, replacement = words[:, real], words.gather(2, order)[:, real]  # [B, n] each
        mapping = torch.arange(num_words, device=device).repeat(batch, 1).scatter_(1, replaced, replacement)
        story = mapping.gather(1, story.reshape(batch, -1)).view_as(story)
        question = mapping.gather(1, question)
        is_answer = real & (self.answers >= 0)
        if not is_answer.any():
            return story, question, lambda logits: logits
        answers = self.answers.expand(batch, -1, -1)
        answered, answer_of_replacement = answers[:, is_answer], answers.gather(2, order)[:, is_answer]
        # The logit of answer a (word w) is the permuted example's logit of the answer of w's replacement.
        source = torch.arange(num_answers, device=device).repeat(batch, 1).scatter_(1, answered, answer_of_replacement)
        return story, question, lambda logits: logits.gather(1, source)
