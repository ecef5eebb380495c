"""The teacher's text encoder (VITS's relative-position transformer) in torch, read from its graph; and narrowed."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import numpy_helper
from torch import nn

from jetvox.provisioning.distill.interface import InterfaceError

PREFIX = "enc_p."
"""Where Piper's export keeps the text encoder's weights (``enc_p.encoder.attn_layers.0.conv_q.weight``, ...)."""


@dataclass(frozen=True)
class TextEncoderConfig:
    """A VITS text encoder's shape, as read from its weights."""

    vocab: int
    """Phoneme ids the embedding holds."""
    hidden: int
    """Channels per phoneme."""
    filters: tuple[int, ...]
    """Hidden channels of each layer's feed-forward block (one per layer)."""
    out: int
    """Channels of the prior mean (the projection gives twice as many: means and log-scales)."""
    heads: int = 2
    """Attention heads."""
    window: int = 4
    """Relative positions each side that have their own embedding."""
    kernel: int = 3
    """Kernel of the feed-forward convolutions."""


class RelativeAttention(nn.Module):
    """Multi-head self-attention with relative-position embeddings for keys and values, shared by the heads."""

    def __init__(self, channels: int, heads: int, window: int) -> None:
        super().__init__()
        self.heads, self.window, self.k = heads, window, channels // heads
        self.conv_q, self.conv_k, self.conv_v, self.conv_o = (nn.Conv1d(channels, channels, 1) for _ in range(4))
        self.emb_rel_k = nn.Parameter(torch.zeros(1, 2 * window + 1, self.k))
        self.emb_rel_v = nn.Parameter(torch.zeros(1, 2 * window + 1, self.k))

    def _relative(self, emb: torch.Tensor, length: int) -> torch.Tensor:
        """The embeddings of offsets -(length-1)..length-1, [1, 2*length-1, k] (zero beyond the window)."""
        pad = max(length - (self.window + 1), 0)
        start = max(self.window + 1 - length, 0)
        return F.pad(emb, (0, 0, pad, pad))[:, start:start + 2 * length - 1]

    @staticmethod
    def _to_absolute(x: torch.Tensor) -> torch.Tensor:
        """[B, H, L, 2L-1] indexed by relative offset -> [B, H, L, L] indexed by key position."""
        b, h, n, _ = x.shape
        flat = F.pad(F.pad(x, (0, 1)).reshape(b, h, 2 * n * n), (0, n - 1))
        return flat.reshape(b, h, n + 1, 2 * n - 1)[:, :, :n, n - 1:]

    @staticmethod
    def _to_relative(x: torch.Tensor) -> torch.Tensor:
        """[B, H, L, L] indexed by key position -> [B, H, L, 2L-1] indexed by relative offset."""
        b, h, n, _ = x.shape
        flat = F.pad(F.pad(x, (0, n - 1)).reshape(b, h, n * (2 * n - 1)), (n, 0))
        return flat.reshape(b, h, n, 2 * n)[:, :, :, 1:]

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor) -> torch.Tensor:
        b, c, n = x.shape
        q, k, v = (conv(x).reshape(b, self.heads, self.k, n).transpose(2, 3)
                   for conv in (self.conv_q, self.conv_k, self.conv_v))
        q = q / math.sqrt(self.k)
        scores = q @ k.transpose(-2, -1)
        scores = scores + self._to_absolute(q @ self._relative(self.emb_rel_k, n).unsqueeze(0).transpose(-2, -1))
        p = torch.softmax(scores.masked_fill(attn_mask == 0, -1e4), dim=-1)
        out = p @ v + self._to_relative(p) @ self._relative(self.emb_rel_v, n).unsqueeze(0)
        return self.conv_o(out.transpose(2, 3).reshape(b, c, n))


class ChannelNorm(nn.Module):
    """Layer normalisation over the channels of [B, C, T]."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.gamma, self.beta = nn.Parameter(torch.ones(channels)), nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x.transpose(1, -1), (x.shape[1],), self.gamma, self.beta, 1e-5).transpose(1, -1)


class FeedForward(nn.Module):
    """Two 'same'-padded convolutions with a ReLU between, masked before each."""

    def __init__(self, channels: int, filters: int, kernel: int) -> None:
        super().__init__()
        self.pad = ((kernel - 1) // 2, kernel // 2)
        self.conv_1, self.conv_2 = nn.Conv1d(channels, filters, kernel), nn.Conv1d(filters, channels, kernel)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv_1(F.pad(x * mask, self.pad)))
        return self.conv_2(F.pad(x * mask, self.pad)) * mask


class TextEncoder(nn.Module):
    """Phoneme ids to the prior mean ``m_p`` [B, out, P], as the teacher's ``enc_p`` computes it."""

    def __init__(self, cfg: TextEncoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.emb = nn.Embedding(cfg.vocab, cfg.hidden)
        self.attn_layers = nn.ModuleList(RelativeAttention(cfg.hidden, cfg.heads, cfg.window) for _ in cfg.filters)
        self.norm_layers_1 = nn.ModuleList(ChannelNorm(cfg.hidden) for _ in cfg.filters)
        self.ffn_layers = nn.ModuleList(FeedForward(cfg.hidden, f, cfg.kernel) for f in cfg.filters)
        self.norm_layers_2 = nn.ModuleList(ChannelNorm(cfg.hidden) for _ in cfg.filters)
        self.proj = nn.Conv1d(cfg.hidden, 2 * cfg.out, 1)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        mask = (torch.arange(ids.shape[1])[None, :] < lengths[:, None]).to(torch.float32)[:, None, :]
        x = self.embed(ids, mask)
        for i in range(len(self.cfg.filters)):
            mid = self.attend(i, x, mask)
            x = self.close(i, mid, self.ffn(i)(mid, mask))
        return (self.proj(x * mask) * mask)[:, :self.cfg.out]

    def embed(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Ids [B, P] to the first layer's input [B, hidden, P]."""
        return (self.emb(ids) * math.sqrt(self.cfg.hidden)).transpose(1, -1) * mask

    def attend(self, layer: int, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Layer ``layer``'s attention and first norm: its feed-forward block's input."""
        norm = self.norm_layers_1[layer]
        return norm(x + self.attn_layers[layer](x, mask.unsqueeze(2) * mask.unsqueeze(-1)))

    def ffn(self, layer: int) -> FeedForward:
        block = self.ffn_layers[layer]
        assert isinstance(block, FeedForward)  # for the type checker: a ModuleList yields Modules
        return block

    def close(self, layer: int, mid: torch.Tensor, added: torch.Tensor) -> torch.Tensor:
        """Layer ``layer``'s output: its second norm of the feed-forward block's input plus what the block added."""
        norm = self.norm_layers_2[layer]
        return norm(mid + added)


def from_onnx(model: onnx.ModelProto) -> TextEncoder:
    """The text encoder of a Piper VITS acoustic model (or of ``hybrid.text_encoder``'s cut of one), its weights
    copied from the graph's initializers; the embedding is the table the ``input`` ids index."""
    weights = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    lookup = next((n for n in model.graph.node if n.op_type == "Gather" and n.input[1] == "input"), None)
    if lookup is None or lookup.input[0] not in weights:
        raise InterfaceError("no embedding table indexed by the input ids: not a VITS text encoder")
    layers = sorted({int(k.split(".")[3]) for k in weights if k.startswith(f"{PREFIX}encoder.ffn_layers.")})
    if not layers:
        raise InterfaceError(f"no {PREFIX}encoder.ffn_layers.* weights: not a VITS text encoder")
    table = weights[lookup.input[0]]
    filters = tuple(int(weights[f"{PREFIX}encoder.ffn_layers.{i}.conv_1.weight"].shape[0]) for i in layers)
    window = (weights[f"{PREFIX}encoder.attn_layers.0.emb_rel_k"].shape[1] - 1) // 2
    cfg = TextEncoderConfig(vocab=table.shape[0], hidden=table.shape[1], filters=filters,
                            out=weights[f"{PREFIX}proj.weight"].shape[0] // 2, window=window,
                            kernel=weights[f"{PREFIX}encoder.ffn_layers.0.conv_1.weight"].shape[2])
    encoder = TextEncoder(cfg)
    state = {"emb.weight": table}
    for name in encoder.state_dict():
        if name != "emb.weight":
            key = PREFIX + ("" if name.startswith("proj.") else "encoder.") + name
            if key not in weights:
                raise InterfaceError(f"the text encoder's weight {key} is missing from the graph")
            state[name] = weights[key]
    encoder.load_state_dict({k: torch.from_numpy(np.array(v, dtype=np.float32)) for k, v in state.items()})
    return encoder.eval()


@torch.no_grad()
def shrink(teacher: TextEncoder, filters: int, ids: Sequence[np.ndarray], ridge: float = 1e-3
           ) -> tuple[TextEncoder, list[float]]:
    """A copy of ``teacher`` whose feed-forward blocks keep ``filters`` hidden channels each, made layer by layer on
    the sentences ``ids``: the channels whose activations carry the most energy into the block's output, then the
    output convolution refitted by least squares to what the teacher's block adds to its residual stream (less the
    error the copy has before it). Returns the copy and each layer's mean absolute residual."""
    if not 0 < filters <= min(teacher.cfg.filters):
        raise ValueError(f"expected from 1 to {min(teacher.cfg.filters)} feed-forward channels; got {filters}")
    small = TextEncoder(dataclasses.replace(teacher.cfg, filters=(filters,) * len(teacher.cfg.filters)))
    small.load_state_dict({k: v for k, v in teacher.state_dict().items() if "ffn_layers" not in k}, strict=False)
    residuals = []
    masks = [torch.ones(1, 1, len(x)) for x in ids]
    t_x = [teacher.embed(torch.from_numpy(np.asarray(x, np.int64))[None], m) for x, m in zip(ids, masks)]
    s_x = list(t_x)  # the embeddings are the teacher's
    for i in range(len(teacher.cfg.filters)):
        full, ffn = teacher.ffn(i), small.ffn(i)
        t_mid = [teacher.attend(i, x, m) for x, m in zip(t_x, masks)]
        t_add = [full(x, m) for x, m in zip(t_mid, masks)]
        inputs = [small.attend(i, x, m) for x, m in zip(s_x, masks)]
        targets = [(tm + ta - s)[0].T for tm, ta, s in zip(t_mid, t_add, inputs)]
        t_x = [teacher.close(i, tm, ta) for tm, ta in zip(t_mid, t_add)]
        hidden = [torch.relu(full.conv_1(F.pad(s, full.pad)))[0] for s in inputs]  # [teacher's filters, P] each
        energy = torch.cat(hidden, 1).pow(2).mean(1) * full.conv_2.weight.pow(2).sum((0, 2))
        keep = torch.argsort(energy, descending=True)[:filters].sort().values
        feats = []
        for h in hidden:
            taps = F.pad(h[keep], full.pad)
            feats.append(torch.cat([taps[:, j:j + h.shape[1]] for j in range(teacher.cfg.kernel)]
                                   + [torch.ones(1, h.shape[1])]).T)
        f, y = torch.cat(feats).double(), torch.cat(targets).double()
        a = f.T @ f
        a += ridge * torch.trace(a) / a.shape[0] * torch.eye(a.shape[0], dtype=a.dtype)
        sol = torch.linalg.solve(a, f.T @ y).float()  # [kernel * filters + 1, hidden]
        bias_in, small_in, small_out = full.conv_1.bias, ffn.conv_1.bias, ffn.conv_2.bias
        assert bias_in is not None and small_in is not None and small_out is not None  # nn.Conv1d made with bias
        ffn.conv_1.weight.copy_(full.conv_1.weight[keep])
        small_in.copy_(bias_in[keep])
        ffn.conv_2.weight.copy_(torch.stack([sol[j * filters:(j + 1) * filters].T
                                             for j in range(teacher.cfg.kernel)], 2))
        small_out.copy_(sol[-1])
        residuals.append(float((f.float() @ sol - y.float()).abs().mean()))
        s_x = [small.close(i, s, ffn(s, m)) for s, m in zip(inputs, masks)]
    return small.eval(), residuals
