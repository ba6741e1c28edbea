"""Packed trials: K networks of one architecture trained at once as one batched model.

Small U-Nets are bound by kernel launches, not arithmetic (DESIGN: a proxy step costs nearly what a
full one does), so the way to save GPU time is to run many of them in the same kernels. Each model keeps
its own parameters as ordinary leaf tensors; every step stacks them (``torch.stack``, differentiable),
runs the stacked parameters through one ``torch.func.functional_call`` under ``torch.func.vmap``, and
back-propagates the sum of the per-model losses, so each model's gradient lands on its own parameters
and equals the gradient it would get alone. Optimisers are grouped by kind (one ``step`` per kind
covers all the pack's models using it), with one parameter group per model holding that model's
learning rate and weight decay — these, and per-tensor statistics such as Novograd's gradient norm, are
therefore exactly those of a model trained alone.

Failures stay local: a model whose loss is not finite is marked failed and left out of the backward
pass and of every later step; when a step runs out of memory the pack is split in halves and retried,
and a model that runs out of memory alone is marked failed while the others go on.

The pack's membership changes while it trains: a model whose trial stopped early or finished its epochs
is *retired* (it leaves every later step, so the stacked step shrinks, and its optimiser state is
freed), and a model may be *added* (a queued trial taking a freed slot): it joins its optimiser kind
as one more parameter group, so the group layout only ever grows, in the order models were added.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from monai.losses import DiceLoss
from monai.optimizers import Novograd
from torch import nn
from torch.func import functional_call, vmap

from proxyhpo.config import OPTIMIZER_OPTIONS, HyperParameters, TrialSpec
from proxyhpo.networks import build_network

__all__ = ["ModelPack", "NUM_CLASSES", "build_models", "per_model_dice_ce", "deep_supervision_weights", "make_optimizer_class", "is_out_of_memory"]

log = logging.getLogger(__name__)

#: Classes of a binary task (background and one foreground), the default; a plan's ``classes`` sets others.
NUM_CLASSES = 2

_OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "adam": torch.optim.Adam,
    "rmsprop": torch.optim.RMSprop,
    "adamax": torch.optim.Adamax,
    "novograd": Novograd,
}


def make_optimizer_class(name: str) -> type[torch.optim.Optimizer]:
    """The optimiser class for a hyper-parameter value (``adam``, ``rmsprop``, ``adamax``, ``novograd``)."""
    try:
        return _OPTIMIZERS[name]
    except KeyError:
        raise ValueError(f"optimizer must be one of {sorted(_OPTIMIZERS)}, got {name!r}") from None


def _optimizer_options(hyperparameters: HyperParameters) -> dict[str, float]:
    """A model's own parameter-group options: each model of a pack keeps its learning rate and weight decay."""
    return {name: getattr(hyperparameters, name) for name in OPTIMIZER_OPTIONS}


def build_models(specs: Sequence[TrialSpec], device: torch.device | str = "cpu", *, in_channels: int = 1, out_channels: int = NUM_CLASSES) -> list[nn.Module]:
    """Build each trial's network (``out_channels`` classes from ``in_channels`` image channels, both from the
    data), initialised from the trial's seed, on ``device``.

    The caller's global random state is left as it was: a trial gets the same initial weights alone or in a
    pack, on any device.
    """
    models = []
    for s in specs:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(s.seed)
            models.append(build_network(s.network, in_channels=in_channels, out_channels=out_channels))
    return [m.to(device) for m in models]


def is_out_of_memory(err: BaseException) -> bool:
    """Whether ``err`` is an out-of-memory error of the GPU (``torch.OutOfMemoryError``) or the CPU allocator."""
    if isinstance(err, torch.OutOfMemoryError):
        return True
    msg = str(err)
    return isinstance(err, RuntimeError) and ("out of memory" in msg or "can't allocate memory" in msg)


_dice = DiceLoss(to_onehot_y=True, softmax=True, reduction="none")


def deep_supervision_weights(heads: int) -> list[float]:
    """nnU-Net's weights of a deep-supervised network's outputs, main first: halving per head, summing to 1.

    Example:
        >>> deep_supervision_weights(3)
        [0.5714285714285714, 0.2857142857142857, 0.14285714285714285]
    """
    raw = [0.5**s for s in range(heads)]
    return [w / sum(raw) for w in raw]


def per_model_dice_ce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """MONAI's ``DiceCELoss(to_onehot_y=True, softmax=True)`` computed separately for each model.

    Args:
        logits: ``(K, N, C, D, H, W)``, the outputs of K models on their own N patches; or
            ``(K, N, S, C, D, H, W)`` from a deep-supervised network in training (DynUNet: the main output
            and ``S - 1`` coarser heads up-sampled), whose losses are weighted by
            :func:`deep_supervision_weights`.
        labels: ``(K, N, 1, D, H, W)`` class indices.

    Returns:
        ``(K,)`` losses; entry k equals ``DiceCELoss(...)(logits[k], labels[k])`` (weighted over heads).
    """
    if logits.ndim == 7 and labels.ndim == 6:  # deep supervision: every head against the full-resolution label
        weights = deep_supervision_weights(logits.shape[2])
        return sum(w * per_model_dice_ce(logits[:, :, s], labels) for s, w in enumerate(weights))  # type: ignore[return-value]
    if logits.ndim != 6 or labels.ndim != 6:
        raise ValueError(f"logits and labels must be (K, N, C, D, H, W), got {tuple(logits.shape)} and {tuple(labels.shape)}")
    k, n = logits.shape[:2]
    flat = logits.reshape(k * n, *logits.shape[2:])
    flat_y = labels.reshape(k * n, *labels.shape[2:])
    dice = _dice(flat, flat_y).reshape(k, -1).mean(dim=1)  # mean over patches and classes, per model
    ce = F.cross_entropy(flat, flat_y[:, 0].long(), reduction="none").reshape(k, -1).mean(dim=1)
    return dice + ce


_told_unstacked: set[str] = set()


def _family_packs(family: str) -> bool:
    """Whether ``family``'s networks can be stacked; a family that cannot is said once in the log."""
    from proxyhpo.registry import NETWORK_FAMILIES

    if getattr(NETWORK_FAMILIES[family], "packable", True):
        return True
    if family not in _told_unstacked:
        _told_unstacked.add(family)
        log.info("network family %s does not support torch.func stacking: a pack runs one model per slot, one after another", family)
    return False


@contextmanager
def _evaluating(modules: Sequence[nn.Module | None]) -> Iterator[None]:
    """Put ``modules`` in eval mode for the block (deep-supervised networks return their main output only), then back."""
    modes = [(m, m.training) for m in modules if m is not None]
    for m, _ in modes:
        m.eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.train(training)


class ModelPack:
    """The networks of K trials of one architecture trained as one batched model, each with its own optimiser settings.

    Each trial's spec gives its network (built from its seed, see :func:`build_models`), its
    hyper-parameters (the optimiser kind and the :data:`~proxyhpo.config.OPTIMIZER_OPTIONS`: learning rate,
    weight decay), its id (in messages) and, in tests, its :class:`~proxyhpo.config.FaultInjection`.

    Args:
        specs: the K trials; model ``i`` is ``specs[i]``'s.
        device: where the networks are built and trained.
        chunk_size: most models computed in one batched call (default: all); lowered automatically on out-of-memory.
        models: networks to train instead of building them from the specs (one per spec, on ``device``,
            identical in architecture): for networks that no :class:`~proxyhpo.config.NetworkConfig`
            describes, as in tests.
        in_channels, out_channels: the networks' image channels and classes (background included).

    Raises:
        ValueError: when ``specs`` is empty, ``models`` does not match it, the networks differ in
            architecture, or one has buffers (batch norm).

    Example:
        >>> pack = ModelPack(specs, device="cuda")
        >>> losses = pack.train_step({i: (image_i, label_i) for i in pack.active}, step=1)
        >>> pack.retire(0)  # trial 0 stopped early: the next step stacks one model fewer
    """

    def __init__(
        self,
        specs: Sequence[TrialSpec],
        *,
        device: torch.device | str = "cpu",
        chunk_size: int | None = None,
        models: Sequence[nn.Module] | None = None,
        in_channels: int = 1,
        out_channels: int = NUM_CLASSES,
    ) -> None:
        if not specs:
            raise ValueError("specs must not be empty")
        if models is not None and len(models) != len(specs):
            raise ValueError(f"models must hold one network per spec, got {len(models)} for {len(specs)} specs")
        self.device = torch.device(device)
        self.specs = list(specs)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.models = list(models) if models is not None else build_models(self.specs, self.device, in_channels=in_channels, out_channels=out_channels)
        self.names = [n for n, _ in self.models[0].named_parameters()]
        self._shapes = [tuple(p.shape) for p in self.models[0].parameters()]
        #: whether the family's networks are stacked under torch.func.vmap; otherwise each slot runs its own model
        self.stacked = _family_packs(self.specs[0].network.family)
        for i, m in enumerate(self.models):
            self._check_packable(m, i)
        # A parameter-free copy of the architecture that functional_call runs the stacked weights through.
        self.skeleton = copy.deepcopy(self.models[0]).to("meta") if self.stacked else None
        self.chunk_size = max(1, chunk_size or len(self.models))
        self.failed: dict[int, str] = {}
        self.retired: set[int] = set()
        self.optimizers: list[torch.optim.Optimizer] = []
        self._optimizer_of: dict[str, torch.optim.Optimizer] = {}
        by_kind: dict[str, list[int]] = {}
        for i, spec in enumerate(self.specs):
            by_kind.setdefault(spec.hyperparameters.optimizer, []).append(i)
        for kind, idx in by_kind.items():
            groups = [{"params": list(self.models[i].parameters()), **_optimizer_options(self.specs[i].hyperparameters)} for i in idx]
            self._optimizer_of[kind] = make_optimizer_class(kind)(groups, lr=groups[0]["lr"])
            self.optimizers.append(self._optimizer_of[kind])

    def _check_packable(self, model: nn.Module, i: int) -> None:
        if [tuple(p.shape) for p in model.parameters()] != self._shapes:
            raise ValueError(f"models[{i}] ({self.specs[i].trial_id}) differs in architecture from models[0]")
        if self.stacked and list(model.buffers()):
            raise ValueError("models with buffers (e.g. batch norm) cannot be packed; use instance norm")

    # ----------------------------------------------------------------------------------------- state
    @property
    def active(self) -> list[int]:
        """Indices of the models still training (neither failed nor retired)."""
        return [i for i in range(len(self.models)) if i not in self.failed and i not in self.retired]

    def add(self, spec: TrialSpec, model: nn.Module | None = None) -> int:
        """Add a trial to the pack (a queued trial takes a freed slot); its model trains from the next step on.

        Its parameters join the optimiser of its kind as a new parameter group (a new optimiser when the
        pack has none of that kind yet), so a pack rebuilt by adding the same trials in the same order has
        the same optimiser layout (what a checkpoint's optimiser state is restored into).

        Args:
            spec: the trial.
            model: its network, on the pack's device, instead of building it from ``spec``.

        Returns:
            The model's index in the pack.

        Raises:
            ValueError: when the model's architecture differs from the pack's, or it has buffers.
        """
        index = len(self.models)
        if model is None:
            (model,) = build_models([spec], self.device, in_channels=self.in_channels, out_channels=self.out_channels)
        self.specs.append(spec)
        try:
            self._check_packable(model, index)
        except ValueError:
            self.specs.pop()
            raise
        self.models.append(model)
        hyperparameters = spec.hyperparameters
        group = {"params": list(model.parameters()), **_optimizer_options(hyperparameters)}
        optimizer = self._optimizer_of.get(hyperparameters.optimizer)
        if optimizer is None:
            optimizer = self._optimizer_of[hyperparameters.optimizer] = make_optimizer_class(hyperparameters.optimizer)([group], lr=group["lr"])
            self.optimizers.append(optimizer)
        else:
            optimizer.add_param_group(group)
        return index

    def retire(self, i: int) -> None:
        """Take model ``i`` out of every later step: its trial stopped early or finished its epochs.

        Unlike :meth:`fail`, nothing went wrong: its weights stay as they are (to be tested or saved), while
        its gradients and optimiser state are freed.
        """
        if i in self.retired:
            return
        self.retired.add(i)
        for p in self.models[i].parameters():
            p.grad = None
            for optimizer in self.optimizers:
                optimizer.state.pop(p, None)

    def fail(self, i: int, reason: str) -> None:
        """Mark model ``i`` failed: it leaves the pack; its parameters are no longer updated."""
        if i not in self.failed:
            self.failed[i] = reason
            log.warning("trial %s failed: %s", self.specs[i].trial_id, reason)
            for p in self.models[i].parameters():
                p.grad = None

    # --------------------------------------------------------------------------------------- compute
    def _stacked(self, chunk: Sequence[int]) -> dict[str, torch.Tensor]:
        params = [dict(self.models[i].named_parameters()) for i in chunk]
        return {n: torch.stack([p[n] for p in params]) for n in self.names}

    def forward(self, chunk: Sequence[int], x: torch.Tensor, *, shared_input: bool = False) -> torch.Tensor:
        """Run models ``chunk`` on their inputs.

        Args:
            chunk: model indices.
            x: ``(len(chunk), N, C, *spatial)`` one input per model, or ``(N, C, *spatial)`` shared by all
                when ``shared_input``.
            shared_input: whether ``x`` is the same for all models (inference).

        Returns:
            ``(len(chunk), N, out_channels, *spatial)`` logits.
        """
        if len(chunk) == 1:  # one model: plain call, no vmap overhead
            return self.models[chunk[0]](x if shared_input else x[0]).unsqueeze(0)
        if not self.stacked:  # a family torch.func cannot stack: one model per slot, one after another
            return torch.stack([self.models[i](x if shared_input else x[j]) for j, i in enumerate(chunk)])

        def run(params: dict[str, torch.Tensor], inp: torch.Tensor) -> torch.Tensor:
            return functional_call(self.skeleton, params, (inp,))

        return vmap(run, in_dims=(0, None if shared_input else 0))(self._stacked(chunk), x)

    def _raise_injected_oom(self, chunk: Sequence[int], step: int) -> None:
        for i in chunk:
            f = self.specs[i].fault
            if f is not None and f.kind == "oom" and step >= f.step:
                raise torch.OutOfMemoryError(f"injected out-of-memory for trial {self.specs[i].trial_id} (testing)")

    def _split_on_oom(self, chunk: list[int], work: Callable[[list[int]], None], what: str) -> None:
        try:
            work(chunk)
        except Exception as e:  # noqa: BLE001 - only out-of-memory is handled, the rest re-raised
            if not is_out_of_memory(e):
                raise
            for i in chunk:
                for p in self.models[i].parameters():
                    p.grad = None
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            if len(chunk) == 1:
                self.fail(chunk[0], f"out of memory during {what} even alone ({' '.join(str(e).split())[:200]})")
                return
            half = len(chunk) // 2
            self.chunk_size = min(self.chunk_size, half)
            log.info("out of memory with %d models together; retrying in packs of %d", len(chunk), half)
            self._split_on_oom(chunk[:half], work, what)
            self._split_on_oom(chunk[half:], work, what)

    def _chunks(self, members: Sequence[int] | None = None) -> list[list[int]]:
        act = self.active if members is None else [i for i in members if i not in self.failed]
        return [act[s : s + self.chunk_size] for s in range(0, len(act), self.chunk_size)]

    def train_step(self, batches: Mapping[int, tuple[torch.Tensor, torch.Tensor]], step: int) -> dict[int, float]:
        """One optimiser step of every active model, each on its own batch.

        Args:
            batches: ``{model index: (image (N, C, *patch), label (N, 1, *patch))}`` for every active
                model; all batches have the same shape.
            step: the 1-based step number (used by fault injection and in failure messages).

        Returns:
            the loss of each model that completed the step, by model index.
        """
        losses: dict[int, float] = {}
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=True)

        def work(chunk: list[int]) -> None:
            self._raise_injected_oom(chunk, step)
            images = torch.stack([batches[i][0] for i in chunk])
            labels = torch.stack([batches[i][1] for i in chunk])
            out = self.forward(chunk, images)
            loss = per_model_dice_ce(out, labels)
            for j, i in enumerate(chunk):
                f = self.specs[i].fault
                if f is not None and f.kind == "nan" and step == f.step:
                    loss = loss.clone()
                    loss[j] = float("nan")  # testing: poison this model's loss only
            values = loss.detach().cpu().tolist()
            ok = [j for j, v in enumerate(values) if math.isfinite(v)]
            for j, v in enumerate(values):
                if j not in ok:
                    self.fail(chunk[j], f"loss became {v} at step {step}")
            if ok:
                # Each model's gradient depends only on its own loss term of the sum.
                loss[ok].sum().backward()
            losses.update({chunk[j]: values[j] for j in ok})

        for chunk in self._chunks():
            self._split_on_oom(chunk, work, f"training step {step}")
        for i in self.failed:
            for p in self.models[i].parameters():
                p.grad = None  # optimisers skip parameters without a gradient
        for opt in self.optimizers:
            opt.step()
        return {i: v for i, v in losses.items() if i not in self.failed}

    @torch.no_grad()
    def predict(self, chunk: Sequence[int], x: torch.Tensor) -> torch.Tensor:
        """Logits of models ``chunk`` on one shared input, models stacked on channels.

        Args:
            chunk: model indices.
            x: ``(N, C, *spatial)``.

        Returns:
            ``(N, len(chunk) * out_channels, *spatial)``: model j's logits are channels
            ``[j * out_channels, (j + 1) * out_channels)``, the layout ``sliding_window_inference`` needs.
        """
        with _evaluating([self.skeleton, *(self.models[i] for i in chunk)]):  # a deep-supervised network's main output only
            out = self.forward(chunk, x, shared_input=True)  # (K, N, C, ...)
        return out.transpose(0, 1).reshape(out.shape[1], -1, *out.shape[3:])

    def run_chunked(self, work: Callable[[list[int]], None], what: str, members: Sequence[int] | None = None) -> None:
        """Call ``work(chunk)`` over ``members`` (default: the active models) in chunks, splitting chunks that run out of memory.

        ``members`` may name retired models (a finished trial's test); failed ones are skipped.
        """
        for chunk in self._chunks(members):
            self._split_on_oom(chunk, work, what)
