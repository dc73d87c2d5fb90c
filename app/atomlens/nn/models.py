"""Network architectures, built from the plain-dict description stored in a model card.

* :class:`UNet` - the fully convolutional atom finder: a U-Net whose bottleneck is a stack of
  dilated convolutions (wide context at low resolution, as in Ziatdinov et al. 2017), with
  output at the input's resolution, one channel per class (background, atom, dopant, vacancy).
* :class:`GapCNN` - the defect-type classifier: convolutions, global average pooling and one
  linear layer, whose class activation maps M_c(x, y) = sum_k w_k^c f_k(x, y) localise
  defects (Zhou et al. 2016).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["UNet", "GapCNN", "build_model", "count_parameters"]


def _block(cin: int, cout: int, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=dilation, dilation=dilation, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class UNet(nn.Module):
    """U-Net with a dilated bottleneck.

    Parameters
    ----------
    in_channels, n_classes : int
    base : int
        Channels of the first level; level i has base * 2**i.
    depth : int
        Number of 2x down-samplings.  Inputs are padded to a multiple of 2**depth.
    dilations : tuple of int
        Dilation rates of the bottleneck's convolutions, applied in sequence and summed
        (a small atrous spatial pyramid).
    """

    def __init__(self, in_channels: int = 1, n_classes: int = 4, base: int = 16, depth: int = 3,
                 dilations: tuple[int, ...] = (1, 2, 4, 8)):
        super().__init__()
        self.depth = depth
        ch = [base * 2**i for i in range(depth + 1)]
        self.down = nn.ModuleList()
        cin = in_channels
        for i in range(depth):
            self.down.append(_block(cin, ch[i]))
            cin = ch[i]
        self.bottleneck_in = _block(cin, ch[depth])
        self.dilated = nn.ModuleList([
            nn.Sequential(nn.Conv2d(ch[depth], ch[depth], 3, padding=d, dilation=d, bias=False),
                          nn.BatchNorm2d(ch[depth]), nn.ReLU(inplace=True))
            for d in dilations
        ])
        self.up = nn.ModuleList()
        self.reduce = nn.ModuleList()
        for i in reversed(range(depth)):
            self.reduce.append(nn.Conv2d(ch[i + 1], ch[i], 1))
            self.up.append(_block(2 * ch[i], ch[i]))
        self.head = nn.Conv2d(ch[0], n_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Per-pixel class logits.

        Parameters
        ----------
        x : (N, in_channels, H, W) tensor
            Normalised images, any H and W: they are padded (reflected, or replicated for images
            smaller than the padding) to a multiple of ``2**depth`` and the output is cropped back.

        Returns
        -------
        (N, n_classes, H, W) tensor
            Logits, before softmax; channel 0 is background.
        """
        h, w = x.shape[-2:]
        m = 2**self.depth
        ph, pw = (-h) % m, (-w) % m
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="reflect" if min(h, w) > max(ph, pw) else "replicate")
        skips = []
        for blk in self.down:
            x = blk(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self.bottleneck_in(x)
        y = x
        for conv in self.dilated:
            y = conv(y)
            x = x + y
        for red, blk, skip in zip(self.reduce, self.up, reversed(skips)):
            x = F.interpolate(red(x), size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = blk(torch.cat([x, skip], dim=1))
        return self.head(x)[..., :h, :w]


class GapCNN(nn.Module):
    """Convolutional classifier with global average pooling and class activation maps.

    ``forward`` returns logits (N, n_types) for multi-label defect types; ``cam`` returns
    the maps (N, n_types, H, W), upsampled to the input size.

    Parameters
    ----------
    in_channels : int
        Channels of the input images.
    n_types : int
        Number of defect types (one logit and one map each).
    base : int
        Channels of the first level; level i has base * 2**i, the last (dilated) block
        2 * base * 2**(depth - 1) (``n_features``).
    depth : int
        Number of 2x max-poolings: the maps have 1/2**depth of the input's resolution.
    """

    def __init__(self, in_channels: int = 1, n_types: int = 8, base: int = 16, depth: int = 3):
        super().__init__()
        layers, cin = [], in_channels
        for i in range(depth):
            layers += [_block(cin, base * 2**i), nn.MaxPool2d(2)]
            cin = base * 2**i
        layers += [_block(cin, cin * 2, dilation=2)]
        self.features = nn.Sequential(*layers)
        self.n_features = cin * 2
        self.fc = nn.Linear(self.n_features, n_types)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Defect-type logits of whole images.

        Parameters
        ----------
        x : (N, in_channels, H, W) tensor
            Normalised images; H and W of at least ``2**depth`` px.

        Returns
        -------
        (N, n_types) tensor
            Independent (multi-label) logits: ``sigmoid`` gives the probability of each type.
        """
        f = self.features(x)
        return self.fc(f.mean(dim=(2, 3)))

    def stride(self) -> int:
        """Size of one feature (and class-activation) cell, in input pixels."""
        return 2 ** sum(isinstance(m, nn.MaxPool2d) for m in self.features)

    def forward_maps(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, maps) with the maps M_c = sum_k w_k^c f_k (bias excluded) at the feature
        resolution (1/:meth:`stride` of the input); the logits are the maps' means plus the bias.

        Parameters
        ----------
        x : (N, in_channels, H, W) tensor
            Normalised images.

        Returns
        -------
        logits : (N, n_types) tensor
            As :meth:`forward` gives them.
        maps : (N, n_types, H // stride, W // stride) tensor
            Class activation maps, in logit units per feature cell.
        """
        f = self.features(x)
        logits = self.fc(f.mean(dim=(2, 3)))
        return logits, torch.einsum("ck,nkhw->nchw", self.fc.weight, f)

    def cam(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, maps): M_c = sum_k w_k^c f_k, bias excluded, upsampled to x's size.

        Parameters
        ----------
        x : (N, in_channels, H, W) tensor
            Normalised images.

        Returns
        -------
        logits : (N, n_types) tensor
            As :meth:`forward` gives them.
        maps : (N, n_types, H, W) tensor
            The maps of :meth:`forward_maps`, bilinearly upsampled to the input's pixels.
        """
        logits, maps = self.forward_maps(x)
        maps = F.interpolate(maps, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return logits, maps


_ARCHS = {"unet": UNet, "gapcnn": GapCNN}


def build_model(arch: dict) -> nn.Module:
    """Model from a card's ``architecture`` entry: ``{"name": "unet", "params": {...}}``.

    Parameters
    ----------
    arch : dict
        ``name``: ``"unet"`` (:class:`UNet`) or ``"gapcnn"`` (:class:`GapCNN`); ``params``
        (optional): keyword arguments of that class (a JSON list for ``dilations`` is accepted).

    Returns
    -------
    torch.nn.Module
        A new model with freshly initialised weights, in training mode, on the CPU.

    Raises
    ------
    ValueError
        For an unknown architecture name.
    """
    try:
        cls = _ARCHS[arch["name"]]
    except KeyError:
        raise ValueError(f"unknown architecture {arch.get('name')!r}; known: {sorted(_ARCHS)}") from None
    params = dict(arch.get("params", {}))
    if "dilations" in params:
        params["dilations"] = tuple(params["dilations"])
    return cls(**params)


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (weights and biases, trainable or not) of `model`.

    Parameters
    ----------
    model : torch.nn.Module

    Returns
    -------
    int
        The sum of ``numel()`` over ``model.parameters()`` (BatchNorm running statistics, which
        are buffers, not included).
    """
    return sum(p.numel() for p in model.parameters())
