"""The NAS supernet: one module holding the shared weights of every operation of a search space.

The base architecture is the paper's (Fig. 2 of ``papers/resource-optimized-nas-3d-segmentation.md``),
a U-Net with instance normalisation and five encoder stages (channels ``c1 .. c5``), four decoder
stages mirroring encoder stages 1..4, and normal (not depth-wise) convolutions of 1x1x1 or 3x3x3:

- every stage starts with a fixed 3x3x3 convolution that changes the channels (encoder stage i:
  ``c(i-1) -> ci`` with ``c0 = in_channels``; decoder stage j: ``c(j+1) -> cj``, at the lower resolution
  it comes from, then resized to encoder stage j's size), followed by instance norm and the activation;
- then a searchable residual 3x3x3 convolution with the chosen dilation:
  ``out = h + act(norm(conv_d(h)))``; the zero operation removes the branch (``out = h``);
- after encoder stages 1..4, pooling (max or average) by the chosen stride ``(D, H, W)``;
- each enabled skip ``(encoder i, decoder j)`` is a 1x1x1 convolution ``ci -> cj`` (the paper's
  matching operation, DeepLabV3+ style) resized in 3D to decoder stage j's size and added element-wise
  (a sum, never a concatenation) to the decoder's features before its searchable convolution;
- deep supervision: 1x1x1 convolutions of decoder stages 1, 2 and 3 to ``out_channels``, resized to the
  input's size and summed: the logits.

**Any input size.** Pooling uses ``ceil_mode`` (an odd side of 5 pools to 3), with the window cut to the
side where the side is smaller than the stride; decoder features are resized to the exact size of the
encoder stage they mirror (trilinear). So whole images of any ``(D, H, W)`` are segmented in one pass
and the logits have the input's size. Where a feature shrinks to a single voxel, instance norm (which
would raise) gives its limit, zero.

**Dilation weight sharing.** Each searchable convolution has ONE 3x3x3 kernel, shared by every
dilation rate (the rate is an argument of the convolution, not a separate module). The child network
is never retrained, so its weights must be trained whatever rates the controller tried along the way:
with one kernel per rate, switching to a rate chosen rarely would hand the child an almost untrained
kernel. Sharing also keeps the supernet (and its Adam state) as small as the largest child, the
memory the paper optimises for.

**Parameters of a path.** The convolutions followed by instance norm have no bias (instance norm
cancels it); the 1x1x1 skip and head convolutions have one. A path uses the fixed convolutions and heads
always, the searchable convolution of a kept stage and the 1x1x1 convolution of an enabled skip
(:meth:`Supernet.parameter_names`); the others get no gradient.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.networks.blocks import Convolution
from monai.networks.layers.factories import Act, Pool
from torch import nn

from proxyhpo.config.base import brief
from proxyhpo.config.nas_space import OPERATIONS, SKIP_PAIRS, Architecture, NasSearchSpace
from proxyhpo.errors import InputError
from proxyhpo.networks.nas_encoding import encode

__all__ = ["Supernet", "estimate_memory", "feature_sizes", "memory_breakdown", "path_parameter_count"]

Size = tuple[int, int, int]

#: Adam keeps two values per parameter (first and second moments).
ADAM_STATE_VALUES = 2


def feature_sizes(spatial: Sequence[int], strides: Sequence[Sequence[int]]) -> tuple[Size, ...]:
    """Spatial sizes of encoder stages 1..5 for an input of ``spatial`` ``(D, H, W)``.

    Pooling after stage i divides each side by its stride, rounding up (``ceil_mode``).

    Example:
        >>> feature_sizes((11, 33, 32), [(2, 2, 2), (2, 2, 2), (1, 2, 2), (1, 2, 2)])
        ((11, 33, 32), (6, 17, 16), (3, 9, 8), (3, 5, 4), (3, 3, 2))
    """
    sizes = [tuple(int(s) for s in spatial)]
    for stride in strides:
        sizes.append(tuple(-(-n // k) for n, k in zip(sizes[-1], stride)))
    return tuple(sizes)  # type: ignore[return-value]


def _instance_norm(x: torch.Tensor) -> torch.Tensor:
    """Instance norm without affine parameters; zero (its limit) where a feature is a single voxel."""
    if math.prod(x.shape[2:]) == 1:
        return x - x  # torch raises on one spatial element; (x - mean) is exactly zero there
    return F.instance_norm(x)


def _resize(x: torch.Tensor, size: Size) -> torch.Tensor:
    """3D (trilinear) resize of ``x`` (BCDHW) to ``size``; ``x`` itself when it already has that size."""
    if tuple(x.shape[2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="trilinear", align_corners=False)


def _pool(x: torch.Tensor, stride: Size, pooling: str) -> torch.Tensor:
    """Pool ``x`` by ``stride`` with ceil mode; a window never exceeds a side (a 1-voxel side stays 1)."""
    if all(s == 1 for s in stride):
        return x
    kernel = tuple(min(s, n) for s, n in zip(stride, x.shape[2:]))
    return Pool[pooling, 3](kernel_size=kernel, stride=stride, ceil_mode=True)(x)


def _conv(in_channels: int, out_channels: int, kernel_size: int, bias: bool) -> Convolution:
    return Convolution(3, in_channels, out_channels, kernel_size=kernel_size, bias=bias, conv_only=True)


class Supernet(nn.Module):
    """Every operation of a :class:`~proxyhpo.config.NasSearchSpace` with shared weights; a child is a path.

    Args:
        space: the search space (its channels, ``in_channels`` and ``out_channels``).

    Example:
        >>> from proxyhpo.config import NasSpaceConfig
        >>> from proxyhpo.networks.nas_encoding import largest
        >>> space = NasSearchSpace.from_shapes(NasSpaceConfig(channels=(2, 4, 4, 8, 8)), [(32, 32, 32)], in_channels=1)
        >>> net = Supernet(space)
        >>> net(torch.zeros(1, 1, 17, 20, 23), largest(space)).shape
        torch.Size([1, 1, 17, 20, 23])
    """

    def __init__(self, space: NasSearchSpace) -> None:
        super().__init__()
        if not isinstance(space, NasSearchSpace):
            raise InputError("Supernet", f"argument 'space' is a {type(space).__name__}, expected a NasSearchSpace", "pass NasSearchSpace.from_shapes(...)")
        self.space = space
        c = space.channels
        ins = (space.in_channels, *c[:-1])
        self.encoder = nn.ModuleList(_conv(ins[i], c[i], 3, bias=False) for i in range(5))
        self.decoder = nn.ModuleList(_conv(c[j + 1], c[j], 3, bias=False) for j in range(4))  # decoder[j - 1] is stage j
        self.ops = nn.ModuleDict({op: _conv(c[_stage(op) - 1], c[_stage(op) - 1], 3, bias=False) for op in OPERATIONS})
        self.skips = nn.ModuleDict({_skip_key(i, j): _conv(c[i - 1], c[j - 1], 1, bias=True) for i, j in SKIP_PAIRS})
        self.heads = nn.ModuleList(_conv(c[j], space.out_channels, 1, bias=True) for j in range(3))  # heads[j - 1]: stage j
        self._acts = {name: Act[name](inplace=True) for name in space.config.activations}

    def forward(self, x: torch.Tensor, arch: Architecture) -> torch.Tensor:
        """Logits of the child network ``arch`` for ``x``.

        Args:
            x: images ``(B, in_channels, D, H, W)``, any spatial size.
            arch: a path through this supernet's space.

        Returns:
            logits ``(B, out_channels, D, H, W)``.

        Raises:
            InputError: when ``x`` is not BCDHW with ``in_channels`` channels, or ``arch`` is not in the space.
        """
        if x.ndim != 5 or x.shape[1] != self.space.in_channels or min(x.shape) < 1:
            raise InputError(
                "Supernet.forward",
                f"argument 'x' has shape {tuple(x.shape)}, expected (B, {self.space.in_channels}, D, H, W) with every size >= 1",
                "pass a batch of images with the space's in_channels",
            )
        encode(self.space, arch)  # raises, naming the decision, when arch is not a path of this space
        sizes = feature_sizes(x.shape[2:], arch.strides)
        act = self._acts[arch.activation]
        last_use = _last_use(arch)
        held: dict[int, torch.Tensor] = {}

        h = x
        for i in range(1, 6):
            h = self._residual(f"enc{i}", act(_instance_norm(self.encoder[i - 1](h))), arch, act)
            if i in last_use:
                held[i] = h
            if i < 5:
                h = _pool(h, arch.strides[i - 1], arch.pooling)

        logits: torch.Tensor | None = None
        for j in (4, 3, 2, 1):
            h = _resize(act(_instance_norm(self.decoder[j - 1](h))), sizes[j - 1])
            for i in range(1, 5):
                if (i, j) in arch.skips:
                    h = h + self._skip(i, j, held[i], sizes[j - 1])
                    if last_use[i] == j:
                        del held[i]
            h = self._residual(f"dec{j}", h, arch, act)
            if j <= 3:
                head = _resize(self.heads[j - 1](h), sizes[0])
                logits = head if logits is None else logits + head
        assert logits is not None
        return logits

    def _residual(self, op: str, h: torch.Tensor, arch: Architecture, act: nn.Module) -> torch.Tensor:
        if not arch.keep[op]:
            return h  # the zero operation
        rate = arch.dilations[op]
        conv = self.ops[op].conv
        return h + act(_instance_norm(F.conv3d(h, conv.weight, conv.bias, padding=rate, dilation=rate)))

    def _skip(self, i: int, j: int, feature: torch.Tensor, size: Size) -> torch.Tensor:
        conv = self.skips[_skip_key(i, j)]
        # a 1x1x1 convolution and a trilinear resize commute (both linear, resize weights sum to 1):
        # run the convolution at the smaller of the two sizes
        if math.prod(feature.shape[2:]) > math.prod(size):
            return conv(_resize(feature, size))
        return _resize(conv(feature), size)

    def parameter_names(self, arch: Architecture) -> set[str]:
        """Names (as in ``named_parameters()``) of the parameters the path ``arch`` uses.

        Raises:
            InputError: when ``arch`` is not a path of this supernet's space.
        """
        encode(self.space, arch)
        used = ["encoder.", "decoder.", "heads."]
        used += [f"ops.{op}." for op in OPERATIONS if arch.keep[op]]
        used += [f"skips.{_skip_key(i, j)}." for i, j in arch.skips]
        return {name for name, _ in self.named_parameters() if name.startswith(tuple(used))}

    def extra_repr(self) -> str:
        return f"channels={self.space.channels}, in_channels={self.space.in_channels}, out_channels={self.space.out_channels}"


def _stage(op: str) -> int:
    return int(op[3:])


def _skip_key(i: int, j: int) -> str:
    return f"enc{i}-dec{j}"


def _last_use(arch: Architecture) -> dict[int, int]:
    """Encoder stage -> the last decoder stage (run last: the smallest j) that reads it through a skip."""
    out: dict[int, int] = {}
    for i, j in arch.skips:
        out[i] = min(j, out.get(i, j))
    return out


def path_parameter_count(space: NasSearchSpace, arch: Architecture) -> int:
    """Number of parameters the path ``arch`` uses, computed from the space (equal to the sum over
    :meth:`Supernet.parameter_names`)."""
    c = space.channels
    ins = (space.in_channels, *c[:-1])
    count = sum(27 * ins[i] * c[i] for i in range(5))  # fixed encoder convolutions
    count += sum(27 * c[j + 1] * c[j] for j in range(4))  # fixed decoder convolutions
    count += sum(27 * c[_stage(op) - 1] ** 2 for op in OPERATIONS if arch.keep[op])
    count += sum(c[i - 1] * c[j - 1] + c[j - 1] for i, j in arch.skips)
    count += sum(c[j] * space.out_channels + space.out_channels for j in range(3))
    return count


class _Ledger:
    """Bytes alive while a path runs, tensor by tensor, as :meth:`Supernet.forward` allocates and drops them.

    In training, a tensor autograd saves for backward stays alive; otherwise it is freed at its last use.
    """

    def __init__(self, training: bool) -> None:
        self.training = training
        self.live = 0
        self.peak = 0
        self.largest = 0
        self.saved = 0

    def new(self, nbytes: int, saved: bool) -> tuple[int, bool]:
        self.live += nbytes
        self.peak = max(self.peak, self.live)
        self.largest = max(self.largest, nbytes)
        self.saved += nbytes if saved else 0
        return nbytes, saved

    def drop(self, tensor: tuple[int, bool] | None) -> None:
        if tensor is not None and not (self.training and tensor[1]):
            self.live -= tensor[0]


def estimate_memory(
    space: NasSearchSpace,
    arch: Architecture,
    batch_size: int,
    *,
    training: bool = True,
    bytes_per_value: int = 4,
    spatial_size: Sequence[int] | None = None,
) -> int:
    """Bytes the child ``arch`` needs, computed from shapes alone, without building or running it.

    The sum of :func:`memory_breakdown`'s terms: the path's parameters, in training their gradients and
    Adam's two moments, and the peak of the activations (see :func:`memory_breakdown` for what is and is
    not counted). The tests hold it within 15% of the CPU profiler's peak of a training step and of an
    inference pass (``tests/networks/test_supernet.py``); the bench compares it with
    ``torch.cuda.max_memory_allocated`` on a GPU (``bench/bench_nas.py``).

    Args:
        space: the search space.
        arch: the path.
        batch_size: images per step (>= 1).
        training: count a training step (saved activations, gradients, Adam state); else inference
            (under ``torch.no_grad``).
        bytes_per_value: 4 for float32, 2 for half precision (max-pooling indices stay 8-byte integers).
        spatial_size: ``(D, H, W)`` of the input; defaults to ``arch.patch_size`` (give a whole image's
            size for one-shot inference).

    Returns:
        the estimate in bytes.

    Raises:
        InputError: naming the argument, for a batch size or value size below 1, a bad spatial size, or
            an ``arch`` that is not a path of ``space``.

    Example:
        >>> from proxyhpo.config import NasSpaceConfig
        >>> from proxyhpo.networks.nas_encoding import largest
        >>> space = NasSearchSpace.from_shapes(NasSpaceConfig(), [(155, 240, 240)], in_channels=4)
        >>> round(estimate_memory(space, largest(space), batch_size=2) / 2**30, 1)  # 144x240x240, GiB
        16.3
    """
    terms = memory_breakdown(space, arch, batch_size, training=training, bytes_per_value=bytes_per_value, spatial_size=spatial_size)
    return sum(value for key, value in terms.items() if key != "saved")


def memory_breakdown(
    space: NasSearchSpace,
    arch: Architecture,
    batch_size: int,
    *,
    training: bool = True,
    bytes_per_value: int = 4,
    spatial_size: Sequence[int] | None = None,
) -> dict[str, int]:
    """The terms of :func:`estimate_memory`, in bytes (same arguments).

    Activations are followed tensor by tensor through :meth:`Supernet.forward`. In training, every tensor
    autograd saves for backward stays alive until backward (convolution inputs, convolution outputs read
    by instance norm, activation results, pooling inputs and max-pooling indices, the downsized inputs of
    1x1x1 skips); without gradients a tensor is freed at its last use. Each convolution also holds a
    copy of its input while it runs (the CPU's oneDNN reorders its input; cuDNN's workspace is of that
    order).

    Returns:
        ``parameters`` (the path's), ``optimiser`` (training: gradients and Adam's two moments, 3x the
        parameters; else 0), ``activations`` (the peak of the forward pass's tensors, the input and the
        logits included), ``backward`` (training: the two largest activation gradients alive at once,
        the one flowing in and the one being computed; else 0), and ``saved`` (information only, not
        part of the sum: the bytes autograd saves for backward, 0 without training).

    Not counted: the supernet's other parameters (add them when the whole supernet sits on the device),
    the loss's own tensors and the allocator's rounding.
    """
    where = "estimate_memory"
    for name, value in (("batch_size", batch_size), ("bytes_per_value", bytes_per_value)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(where, f"argument {name!r} is {brief(value)}, expected an integer >= 1", f"pass a positive {name}")
    encode(space, arch)
    spatial = tuple(arch.patch_size if spatial_size is None else spatial_size)
    if len(spatial) != 3 or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in spatial):
        raise InputError(where, f"argument 'spatial_size' is {brief(spatial_size)}, expected three positive integers (D, H, W)", "pass the input's (D, H, W)")

    c = space.channels
    v = bytes_per_value
    sizes = feature_sizes(spatial, arch.strides)

    def nbytes(channels: int, size: Size, per_value: int = v) -> int:
        return batch_size * channels * math.prod(size) * per_value

    ledger = _Ledger(training)
    last_use = _last_use(arch)
    held: dict[int, tuple[int, bool]] = {}

    def conv(inp: tuple[int, bool], out_bytes: int, saved: bool) -> tuple[int, bool]:
        workspace = ledger.new(inp[0], saved=False)  # the convolution's copy of its input
        out = ledger.new(out_bytes, saved=saved)
        ledger.drop(workspace)
        return out

    def conv_norm_act(h: tuple[int, bool], out_bytes: int) -> tuple[int, bool]:
        y = conv(h, out_bytes, saved=True)  # read by instance norm's backward
        a = ledger.new(out_bytes, saved=True)  # norm output; the in-place activation saves its result
        ledger.drop(y)
        return a

    def residual(op: str, h: tuple[int, bool], out_bytes: int) -> tuple[int, bool]:
        if not arch.keep[op]:
            return h
        a = conv_norm_act(h, out_bytes)
        out = ledger.new(out_bytes, saved=True)  # read by the next convolution or pooling
        ledger.drop(a)
        ledger.drop(h)
        return out

    x = ledger.new(nbytes(space.in_channels, sizes[0]), saved=True)  # the caller's input: never freed
    h = x
    for i in range(1, 6):
        s = sizes[i - 1]
        inp = h
        h = conv_norm_act(inp, nbytes(c[i - 1], s))
        if inp is not x and all(inp is not t for t in held.values()):
            ledger.drop(inp)
        h = residual(f"enc{i}", h, nbytes(c[i - 1], s))
        if i in last_use:
            held[i] = h
        if i < 5 and any(k != 1 for k in arch.strides[i - 1]):
            pooled = ledger.new(nbytes(c[i - 1], sizes[i]), saved=True)
            if arch.pooling == "max":
                ledger.drop(ledger.new(nbytes(c[i - 1], sizes[i], 8), saved=True))  # int64 indices
            if i not in held:
                ledger.drop(h)
            h = pooled

    logits: tuple[int, bool] | None = None
    for j in (4, 3, 2, 1):
        s, below = sizes[j - 1], sizes[j]
        inner = conv_norm_act(h, nbytes(c[j - 1], below))
        ledger.drop(h)
        h = inner
        if below != s:
            h = ledger.new(nbytes(c[j - 1], s), saved=False)  # the resized features, read only by additions
            ledger.drop(inner)
        skips = [i for i in range(1, 5) if (i, j) in arch.skips]
        for k, i in enumerate(skips):
            source = sizes[i - 1]
            if math.prod(source) > math.prod(s):
                small = ledger.new(nbytes(c[i - 1], s), saved=True)  # downsized input of the 1x1x1 conv
                branch = conv(small, nbytes(c[j - 1], s), saved=False)
                ledger.drop(small)
            else:
                branch = conv(held[i], nbytes(c[j - 1], source), saved=False)
                if source != s:
                    resized = ledger.new(nbytes(c[j - 1], s), saved=False)
                    ledger.drop(branch)
                    branch = resized
            total = ledger.new(nbytes(c[j - 1], s), saved=(k == len(skips) - 1))  # the last sum feeds a conv
            ledger.drop(branch)
            ledger.drop(h)
            h = total
            if last_use[i] == j:
                ledger.drop(held.pop(i))
        if below != s or skips:
            h = (h[0], True)  # the sum (or the resized features) is read by a convolution: saved
        h = residual(f"dec{j}", h, nbytes(c[j - 1], s))
        if j <= 3:
            head = conv(h, nbytes(space.out_channels, s), saved=False)
            if s != sizes[0]:
                resized = ledger.new(nbytes(space.out_channels, sizes[0]), saved=False)
                ledger.drop(head)
                head = resized
            if logits is None:
                logits = head
            else:
                total = ledger.new(nbytes(space.out_channels, sizes[0]), saved=False)
                ledger.drop(head)
                ledger.drop(logits)
                logits = total

    parameters = path_parameter_count(space, arch) * v
    return {
        "parameters": parameters,
        "optimiser": (1 + ADAM_STATE_VALUES) * parameters if training else 0,
        "activations": ledger.peak,
        "backward": 2 * ledger.largest if training else 0,
        "saved": ledger.saved if training else 0,
    }
