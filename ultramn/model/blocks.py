"""Building blocks shared by the 3D and 2D networks.

Every block works for ``spatial_dims`` 2 (tensors ``[B,C,H,W]``) or 3 (tensors
``[B,C,T,H,W]``). In 3D the spatial and temporal parts are factorised: a ``(1,3,3)``
convolution mixes pixels within a frame and a ``(kt,1,1)`` convolution mixes frames, so
the block costs little more than its 2D twin while seeing time. The temporal part can be a
zero-initialised residual branch (:class:`TemporalResidual`): the 3D network then starts
out as exactly its frame-wise 2D twin and learns temporal mixing on top. Pooling and
upsampling act on H and W only: T is kept through the whole network, so any ``T >= 1`` is
valid.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch import nn

NormKind = Literal["batch", "group", "instance"]
NORM_KINDS: tuple[str, ...] = ("batch", "group", "instance")


def _check_dims(spatial_dims: int) -> None:
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")


def make_norm(kind: str, channels: int, spatial_dims: int) -> nn.Module:
    """A normalisation layer for ``channels`` feature maps.

    ``batch`` (the default everywhere) folds into the preceding convolution when ONNX
    Runtime optimises the graph, so it costs nothing at inference. ``group`` uses up to 8
    groups (useful for tiny training batches). ``instance`` normalises every window on its
    own (affine); it is kept for experiments only: with ``[B,C,1,1,1]`` bottlenecks of
    small inputs it degenerates.
    """
    _check_dims(spatial_dims)
    if kind == "batch":
        return nn.BatchNorm3d(channels) if spatial_dims == 3 else nn.BatchNorm2d(channels)
    if kind == "group":
        groups = next(g for g in (8, 4, 2, 1) if channels % g == 0)
        return nn.GroupNorm(groups, channels)
    if kind == "instance":
        return nn.InstanceNorm3d(channels, affine=True) if spatial_dims == 3 else nn.InstanceNorm2d(channels, affine=True)
    raise ValueError(f"unknown norm {kind!r}; expected one of {NORM_KINDS}")


def _conv(spatial_dims: int, cin: int, cout: int, kernel: tuple[int, ...], bias: bool = False) -> nn.Module:
    padding = tuple(k // 2 for k in kernel)
    if spatial_dims == 3:
        k3, p3 = (kernel[0], kernel[1], kernel[2]), (padding[0], padding[1], padding[2])
        return nn.Conv3d(cin, cout, k3, padding=p3, bias=bias)
    return nn.Conv2d(cin, cout, (kernel[0], kernel[1]), padding=(padding[0], padding[1]), bias=bias)


#: parametrisations of :class:`TemporalResidual`'s branch (``temporal_branch`` of the 3D networks)
TEMPORAL_BRANCHES: tuple[str, ...] = ("scaled_norm", "zero_conv")


class TemporalResidual(nn.Module):
    """Zero-initialised residual temporal mixing: ``x + branch(x)``, ``branch(x) = 0`` at initialisation.

    Input and output ``[B,C,T,H,W]``. At initialisation the module is the identity, so a
    network built from it computes exactly what its frame-wise twin computes; training then
    grows the branch where neighbouring frames help. Zero padding at the window's ends keeps
    ``T=1`` valid. Two parametrisations of the branch (``branch``):

    - ``"scaled_norm"`` (the shipped design): ``norm(conv_(kt,1,1)(x))``, the norm's affine
      scale starting at 0. The convolution is random and gets no gradient while the scale is
      0, and the scale's gradient is the correlation of that random mixing with the loss's,
      so the branch can be slow to grow.
    - ``"zero_conv"``: ``conv_(kt,1,1)(x) + bias``, weights and bias starting at 0, no norm.
      The weights get the gradient ``dL/dout * x`` (shifted in time) from the first step.
    """

    def __init__(self, channels: int, temporal_kernel: int = 3, norm: str = "batch", branch: str = "scaled_norm") -> None:
        super().__init__()
        if branch not in TEMPORAL_BRANCHES:
            raise ValueError(f"unknown temporal_branch {branch!r}; expected one of {TEMPORAL_BRANCHES}")
        self.branch = branch
        pad = temporal_kernel // 2
        self.conv = nn.Conv3d(channels, channels, (temporal_kernel, 1, 1), padding=(pad, 0, 0), bias=branch == "zero_conv")
        self.norm: nn.Module = make_norm(norm, channels, 3) if branch == "scaled_norm" else nn.Identity()
        if branch == "scaled_norm":
            nn.init.zeros_(self.scale)
        else:
            nn.init.zeros_(self.conv.weight)
            if self.conv.bias is not None:
                nn.init.zeros_(self.conv.bias)

    @property
    def scale(self) -> torch.Tensor:
        """The ``scaled_norm`` branch's per-channel scale ``[C]`` (the norm's affine weight; 0 at initialisation)."""
        weight = getattr(self.norm, "weight", None)
        if not isinstance(weight, torch.Tensor):  # every norm make_norm builds is affine; zero_conv has none
            raise TypeError(f"the {self.branch} branch has no norm scale")
        return weight

    def gain(self) -> torch.Tensor:
        """How far the branch has grown, per output channel ``[C]`` (dimensionless, >= 0; 0 = off).

        ``scaled_norm``: the absolute norm scale (the branch's output is normalised, so this
        is its size next to the input's). ``zero_conv``: the L2 norm of the channel's
        weights over input channels and time steps.
        """
        if self.branch == "scaled_norm":
            return self.scale.detach().abs()
        return torch.linalg.vector_norm(self.conv.weight.detach().flatten(1), dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B,C,T,H,W]`` -> ``[B,C,T,H,W]``."""
        return x + self.norm(self.conv(x))


class ResBlock(nn.Module):
    """Residual convolution block: two 3x3 spatial convolutions (+ temporal mixing in 3D).

    2D: ``conv3x3-norm-act-conv3x3-norm (+ skip) -act``.

    3D, ``factorised=True``: ``conv(1,3,3)-norm-act-conv(kt,1,1)-norm-act-conv(1,3,3)-norm
    (+ skip) -act``; with ``temporal_residual=True`` the middle part is
    :class:`TemporalResidual` instead (``y + norm(conv(kt,1,1)(y))``, zero-initialised, no
    activation), so the block starts as its 2D twin. ``factorised=False`` uses two full
    ``(kt,3,3)`` convolutions instead. ``temporal_kernel=1`` removes temporal mixing (a
    per-frame network in 3D clothing). ``temporal_branch`` picks the residual branch's
    parametrisation (:class:`TemporalResidual`).

    Input ``[B,cin,*S]`` -> output ``[B,cout,*S]`` (same spatial/temporal size ``S``).
    The skip is the identity when ``cin == cout``, else a 1x1 convolution + norm.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        norm: str = "batch",
        temporal_kernel: int = 3,
        factorised: bool = True,
        temporal_residual: bool = False,
        temporal_branch: str = "scaled_norm",
    ) -> None:
        super().__init__()
        _check_dims(spatial_dims)
        if temporal_residual and not factorised:
            raise ValueError("temporal_residual needs factorised blocks")
        if temporal_kernel < 1 or temporal_kernel % 2 == 0:
            raise ValueError(f"temporal_kernel must be odd and >= 1, got {temporal_kernel}")
        kt = temporal_kernel
        d = spatial_dims

        def cna(cin: int, cout: int, kernel: tuple[int, ...], act: bool = True) -> list[nn.Module]:
            mods = [_conv(d, cin, cout, kernel), make_norm(norm, cout, d)]
            return [*mods, nn.ReLU(inplace=True)] if act else mods

        cin, cout = in_channels, out_channels
        layers: list[nn.Module]
        if d == 2:
            layers = cna(cin, cout, (3, 3)) + cna(cout, cout, (3, 3), act=False)
        elif factorised:
            temporal: list[nn.Module] = []
            if kt > 1:
                temporal = [TemporalResidual(cout, kt, norm, temporal_branch)] if temporal_residual else cna(cout, cout, (kt, 1, 1))
            layers = cna(cin, cout, (1, 3, 3)) + temporal + cna(cout, cout, (1, 3, 3), act=False)
        else:
            layers = cna(cin, cout, (kt, 3, 3)) + cna(cout, cout, (kt, 3, 3), act=False)
        self.body = nn.Sequential(*layers)
        if in_channels == out_channels:
            self.skip: nn.Module = nn.Identity()
        else:
            self.skip = nn.Sequential(*cna(cin, cout, (1,) * d, act=False))
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B,cin,*S]`` -> ``[B,cout,*S]``."""
        return self.act(self.body(x) + self.skip(x))


class UNetBackbone(nn.Module):
    """Encoder-decoder with skip connections; returns the deepest features and the decoder output.

    Level ``i`` (``0..depth``) has ``base_width * 2**i`` channels; between levels the
    encoder max-pools H and W by 2 and the decoder upsamples them with a stride-2
    transposed convolution, concatenates the encoder's skip and applies a
    :class:`ResBlock`. T (3D) is never pooled. ``temporal_kernel``, ``factorised``,
    ``temporal_residual`` and ``temporal_branch`` are passed to every 3D block.

    Input ``[B,in_channels,(T,)H,W]`` with H and W divisible by ``2**depth``.
    Output ``(deep [B,base_width*2**depth,(T,)H/2**depth,W/2**depth], top [B,base_width,(T,)H,W])``.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int = 1,
        base_width: int = 8,
        depth: int = 4,
        norm: str = "batch",
        dropout: float = 0.1,
        temporal_kernel: int = 3,
        factorised: bool = True,
        temporal_residual: bool = False,
        temporal_branch: str = "scaled_norm",
    ) -> None:
        super().__init__()
        _check_dims(spatial_dims)
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        if base_width < 1:
            raise ValueError(f"base_width must be >= 1, got {base_width}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.spatial_dims = spatial_dims
        self.depth = depth
        widths = [base_width * 2**i for i in range(depth + 1)]
        self.widths = widths

        def block(cin: int, cout: int) -> ResBlock:
            return ResBlock(
                spatial_dims,
                cin,
                cout,
                norm=norm,
                temporal_kernel=temporal_kernel,
                factorised=factorised,
                temporal_residual=temporal_residual,
                temporal_branch=temporal_branch,
            )

        pool: type[nn.Module]
        up: Callable[[int, int], nn.Module]
        drop: type[nn.Module]
        if spatial_dims == 3:
            pool_k: tuple[int, ...] = (1, 2, 2)
            pool, drop = nn.MaxPool3d, nn.Dropout3d

            def up(cin: int, cout: int) -> nn.Module:
                return nn.ConvTranspose3d(cin, cout, (1, 2, 2), stride=(1, 2, 2))
        else:
            pool_k = (2, 2)
            pool, drop = nn.MaxPool2d, nn.Dropout2d

            def up(cin: int, cout: int) -> nn.Module:
                return nn.ConvTranspose2d(cin, cout, 2, stride=2)

        self.stem = block(in_channels, widths[0])
        self.down = nn.ModuleList(nn.Sequential(pool(pool_k, pool_k), block(widths[i], widths[i + 1])) for i in range(depth))
        self.bottleneck_dropout = drop(dropout) if dropout > 0 else nn.Identity()
        self.up = nn.ModuleList(up(widths[i + 1], widths[i]) for i in range(depth))
        self.dec = nn.ModuleList(block(2 * widths[i], widths[i]) for i in range(depth))

    @property
    def out_channels(self) -> int:
        """Channels of the decoder output (``base_width``)."""
        return self.widths[0]

    @property
    def deep_channels(self) -> int:
        """Channels of the deepest features (``base_width * 2**depth``)."""
        return self.widths[-1]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B,Cin,(T,)H,W]`` -> ``(deep features, decoder output)`` (shapes in the class docstring)."""
        skips = [self.stem(x)]
        for down in self.down:
            skips.append(down(skips[-1]))
        deep = self.bottleneck_dropout(skips[-1])
        y = deep
        for i in reversed(range(self.depth)):
            y = self.dec[i](torch.cat([self.up[i](y), skips[i]], dim=1))
        return deep, y


class PlaneHead(nn.Module):
    """Global average pool + dropout + linear: ``[B,C,*S]`` -> plane logits ``[B,n_planes]``."""

    def __init__(self, in_channels: int, n_planes: int, dropout: float = 0.2) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(in_channels, n_planes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B,C,*S]`` -> ``[B,n_planes]``."""
        pooled = torch.flatten(torch.mean(x, dim=tuple(range(2, x.ndim)), keepdim=True), 1)
        return self.linear(self.dropout(pooled))
