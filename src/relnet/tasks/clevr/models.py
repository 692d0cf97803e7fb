"""CLEVR models: the paper's RN from pixels and from state descriptions, the baselines of its
Table 1 (CNN+LSTM, CNN+LSTM with stacked attention), and a question-only LSTM (what the answer
prior gives without looking). All read the question with an LSTM."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from relnet.nn import ConvObjects, SequenceEncoder, conv_stack, image_to_float, mlp
from relnet.rn import RelationNetwork


class ImageAugment(nn.Module):
    """Training-time augmentation of the public CLEVR recipe, batched on the images' device:
    a random shift of up to ``pad`` pixels (pad-and-crop) and a rotation within ±``max_angle``
    radians, as one affine resampling. Does nothing in eval mode."""

    def __init__(self, pad: int = 4, max_angle: float = 0.05):
        super().__init__()
        self.pad = pad
        self.max_angle = max_angle

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if not self.training or (self.pad == 0 and self.max_angle == 0):
            return images
        batch, _, height, width = images.shape
        angle = (torch.rand(batch, device=images.device) * 2 - 1) * self.max_angle
        shift = torch.randint(-self.pad, self.pad + 1, (batch, 2), device=images.device).to(images.dtype)
        cos, sin = torch.cos(angle).to(images.dtype), torch.sin(angle).to(images.dtype)
        theta = torch.stack([torch.stack([cos, -sin, shift[:, 0] * 2 / width], -1),
                             torch.stack([sin, cos, shift[:, 1] * 2 / height], -1)], 1)
        grid = F.affine_grid(theta, list(images.shape), align_corners=False)
        return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


class QuestionEncoder(nn.Module):
    """Word embeddings and an LSTM; the state after the last word is the question vector."""

    def __init__(self, vocab_size: int, embedding_dim: int = 32, hidden: int = 128):
        super().__init__()
        self.encoder = SequenceEncoder(nn.Embedding(vocab_size, embedding_dim, padding_idx=0), hidden)
        self.dim = hidden

    def forward(self, question: torch.Tensor, question_length: torch.Tensor) -> torch.Tensor:
        return self.encoder(question, question_length)


class PixelRN(nn.Module):
    """CNN cells tagged with coordinates are the objects; every pair sees the question."""

    def __init__(self, vocab_size: int, num_answers: int, conv_channels: Sequence[int] = (24,) * 4,
                 embedding_dim: int = 32, lstm: int = 128, g_widths: Sequence[int] = (256,) * 4,
                 f_widths: Sequence[int] = (256, 256), dropout: float = 0.5, augment: bool = True,
                 conv_order: str = "bn-relu"):
        super().__init__()
        self.augment = ImageAugment() if augment else nn.Identity()
        self.objects = ConvObjects(3, conv_channels, order=conv_order)
        self.question = QuestionEncoder(vocab_size, embedding_dim, lstm)
        self.rn = RelationNetwork(self.objects.object_dim, num_answers, lstm, g_widths, f_widths, dropout)

    def forward(self, images, question, question_length):
        objects = self.objects(self.augment(image_to_float(images)))
        return self.rn(objects, self.question(question, question_length))


class StateRN(nn.Module):
    """The scene's object table (x, y, z, then one-hot size, color, material, shape) is the set of
    objects; the mask drops the empty slots of scenes with fewer than 10 objects. Positions are
    scaled by ``position_scale`` so that they span about [-1, 1] like the one-hot features."""

    def __init__(self, vocab_size: int, num_answers: int, object_dim: int, embedding_dim: int = 32, lstm: int = 256,
                 g_widths: Sequence[int] = (512,) * 4, f_widths: Sequence[int] = (512, 1024), dropout: float = 0.02,
                 position_scale: float = 1.0):
        super().__init__()
        self.question = QuestionEncoder(vocab_size, embedding_dim, lstm)
        self.rn = RelationNetwork(object_dim, num_answers, lstm, g_widths, f_widths, dropout)
        scale = torch.ones(object_dim)
        scale[:3] = position_scale
        self.register_buffer("feature_scale", scale, persistent=False)

    def forward(self, objects, object_mask, question, question_length):
        question = self.question(question, question_length)
        return self.rn(objects * self.feature_scale, question, padding_mask=~object_mask)


class CNNLSTM(nn.Module):
    """Baseline: the flattened CNN feature map and the question vector into an MLP."""

    def __init__(self, vocab_size: int, num_answers: int, image_size: int, conv_channels: Sequence[int] = (24,) * 4,
                 embedding_dim: int = 32, lstm: int = 128, widths: Sequence[int] = (512, 512), dropout: float = 0.5,
                 augment: bool = True, conv_order: str = "bn-relu"):
        super().__init__()
        self.augment = ImageAugment() if augment else nn.Identity()
        self.convs = conv_stack(3, conv_channels, order=conv_order)
        cells = math.ceil(image_size / 2 ** len(conv_channels)) ** 2
        self.question = QuestionEncoder(vocab_size, embedding_dim, lstm)
        self.head = mlp(cells * conv_channels[-1] + lstm, widths, num_answers, dropout)

    def forward(self, images, question, question_length):
        features = self.convs(self.augment(image_to_float(images))).flatten(1)
        return self.head(torch.cat([features, self.question(question, question_length)], dim=1))


class StackedAttention(nn.Module):
    """Baseline (Yang et al., 2016): the question attends over the CNN cells in ``hops`` rounds,
    each adding the attended image vector to the query; an MLP answers from the final query."""

    def __init__(self, vocab_size: int, num_answers: int, conv_channels: Sequence[int] = (24,) * 4,
                 embedding_dim: int = 32, lstm: int = 128, attention: int = 256, hops: int = 2,
                 widths: Sequence[int] = (512,), dropout: float = 0.5, augment: bool = True, conv_order: str = "bn-relu"):
        super().__init__()
        self.augment = ImageAugment() if augment else nn.Identity()
        self.objects = ConvObjects(3, conv_channels, order=conv_order)
        self.question = QuestionEncoder(vocab_size, embedding_dim, lstm)
        self.cells = nn.Linear(self.objects.object_dim, lstm)
        self.image_keys = nn.ModuleList(nn.Linear(lstm, attention) for _ in range(hops))
        self.query_keys = nn.ModuleList(nn.Linear(lstm, attention) for _ in range(hops))
        self.scores = nn.ModuleList(nn.Linear(attention, 1) for _ in range(hops))
        self.head = mlp(lstm, widths, num_answers, dropout)

    def forward(self, images, question, question_length):
        cells = self.cells(self.objects(self.augment(image_to_float(images))))  # [B, N, lstm]
        query = self.question(question, question_length)
        for image_key, query_key, score in zip(self.image_keys, self.query_keys, self.scores):
            hidden = torch.tanh(image_key(cells) + query_key(query).unsqueeze(1))
            weights = torch.softmax(score(hidden).squeeze(-1), dim=1)
            query = query + (weights.unsqueeze(-1) * cells).sum(1)
        return self.head(query)


class QuestionOnly(nn.Module):
    """Baseline: the question vector alone into an MLP. It never sees the scene, so it scores what
    the question's wording tells about the answer (CLEVR's "LSTM" baseline, Johnson et al. 2017)."""

    def __init__(self, vocab_size: int, num_answers: int, embedding_dim: int = 32, lstm: int = 128,
                 widths: Sequence[int] = (256,), dropout: float = 0.0):
        super().__init__()
        self.question = QuestionEncoder(vocab_size, embedding_dim, lstm)
        self.head = mlp(lstm, widths, num_answers, dropout)

    def forward(self, question, question_length):
        return self.head(self.question(question, question_length))
