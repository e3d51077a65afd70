"""PyTorch classifiers: a shallow net (one hidden layer) and a deep one.

Both read the float matrix that :class:`mqttids.models.export.NumpyPipeline`
makes from Arrow columns, so rows never pass through Python objects: an epoch
is a seeded permutation of row indices, cut into batches that are numpy slices
handed to torch without a copy per row. Training stops early when the
validation loss has not improved for ``patience`` epochs, and keeps the weights
of the best epoch.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from mqttids.models.errors import DeviceError

log = logging.getLogger(__name__)

DEFAULT_MAX_EPOCHS = 30
DEFAULT_PATIENCE = 3
PREDICT_BATCH = 65536
MIN_BATCH = 64


@dataclass(frozen=True)
class NetParams:
    """Architecture and optimiser settings: the hyperparameters a grid varies."""

    hidden: tuple[int, ...]
    dropout: float = 0.0
    norm: bool = False
    lr: float = 3e-3
    weight_decay: float = 0.0
    batch_size: int = 4096

    def to_json(self) -> dict:
        return {**asdict(self), "hidden": list(self.hidden)}

    @classmethod
    def from_json(cls, obj: dict) -> NetParams:
        return cls(**{**obj, "hidden": tuple(obj["hidden"])})


# The grids each network declares; the cross-validation searches them. Widths
# are sized for the speed targets on 2 CPU cores (shallow >= 300,000 rows/s,
# deep >= 100,000 rows/s per epoch): on 2 threads a 128-128-64 deep net
# measured 95,000-155,000 rows/s, 128-64-32 about 140,000.
GRIDS: dict[str, tuple[NetParams, ...]] = {
    "mlp": (NetParams(hidden=(64,)), NetParams(hidden=(128,))),
    "dnn": (NetParams(hidden=(128, 64, 32), dropout=0.1, norm=True),
            NetParams(hidden=(128, 64, 32), dropout=0.3, norm=True)),
}


@dataclass
class NetFit:
    """A trained network's weights and how training went."""

    state_dict: dict
    best_epoch: int
    epochs_run: int
    history: list[dict] = field(default_factory=list)

    @property
    def rows_per_s(self) -> float:
        """Median training throughput over the epochs run (rows per second)."""
        rates = [h["rows_per_s"] for h in self.history]
        return float(np.median(rates)) if rates else 0.0


def resolve_device(name: str = "auto"):
    """``cpu``, ``cuda`` or ``auto`` (CUDA when present) as a torch.device."""
    import torch

    if name not in ("auto", "cpu", "cuda"):
        raise DeviceError(f"unknown device {name!r}: use cpu, cuda or auto")
    if name == "cuda" and not torch.cuda.is_available():
        raise DeviceError("--device cuda was asked for but torch sees no CUDA device: "
                          "use --device cpu (or auto)")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def build_net(n_in: int, n_out: int, params: NetParams):
    """Linear blocks (with BatchNorm and dropout when asked) and a linear output."""
    from torch import nn

    layers: list = []
    width = n_in
    for h in params.hidden:
        layers.append(nn.Linear(width, h))
        if params.norm:
            layers.append(nn.BatchNorm1d(h))
        layers.append(nn.ReLU())
        if params.dropout > 0:
            layers.append(nn.Dropout(params.dropout))
        width = h
    layers.append(nn.Linear(width, n_out))
    return nn.Sequential(*layers)


def class_weights(y: np.ndarray, n_classes: int) -> np.ndarray:
    """Square-root balanced weights: rare attacks count more without swamping the rest."""
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    present = counts > 0
    w = np.zeros(n_classes)
    w[present] = np.sqrt(counts[present].sum() / (present.sum() * counts[present]))
    return w / w[present].mean()


def effective_batch(n_rows: int, batch_size: int) -> int:
    """``batch_size``, made smaller on small data so that an epoch has ~100 steps.

    Large batches are what makes an epoch over millions of rows fast; on a few
    thousand rows they would leave the optimiser a handful of steps per epoch.
    """
    return int(min(batch_size, max(MIN_BATCH, n_rows // 100)))


def fit_net(x: np.ndarray, y: np.ndarray, params: NetParams, *, n_classes: int,
            seed: int = 0, device: str = "cpu", max_epochs: int = DEFAULT_MAX_EPOCHS,
            patience: int = DEFAULT_PATIENCE, x_val: np.ndarray | None = None,
            y_val: np.ndarray | None = None) -> NetFit:
    """Train a network on ``x`` (float32, n x d) and ``y`` (label indices).

    With validation rows it stops early and keeps the best epoch's weights;
    without, it runs exactly ``max_epochs`` epochs (the refit on all of train).
    """
    import torch

    dev = resolve_device(device)
    torch.manual_seed(seed)
    net = build_net(x.shape[1], n_classes, params).to(dev)
    opt = torch.optim.AdamW(net.parameters(), lr=params.lr, weight_decay=params.weight_decay)
    weight = torch.as_tensor(class_weights(y, n_classes), dtype=torch.float32, device=dev)
    loss_fn = torch.nn.CrossEntropyLoss(weight=weight)
    rng = np.random.default_rng(seed)
    batch = effective_batch(len(x), params.batch_size)
    x = np.ascontiguousarray(x, dtype=np.float32)
    y_t = np.ascontiguousarray(y, dtype=np.int64)

    best = NetFit(_copy_state(net), 0, 0)
    best_loss = float("inf")
    for epoch in range(1, max_epochs + 1):
        started = time.perf_counter()
        train_loss = _train_epoch(net, opt, loss_fn, x, y_t, rng, batch, dev)
        rate = len(x) / max(time.perf_counter() - started, 1e-9)
        entry = {"epoch": epoch, "train_loss": train_loss, "rows_per_s": rate}
        best.history.append(entry)
        best.epochs_run = epoch
        if x_val is None:
            best.best_epoch = epoch
            continue
        entry["val_loss"] = _loss(net, loss_fn, x_val, y_val, dev)
        log.debug("epoch %d: train loss %.4f, validation loss %.4f, %.0f rows/s",
                  epoch, train_loss, entry["val_loss"], rate)
        if entry["val_loss"] < best_loss - 1e-6:
            best_loss, best.best_epoch, best.state_dict = entry["val_loss"], epoch, _copy_state(net)
        elif epoch - best.best_epoch >= patience:
            break
    if x_val is None:
        best.state_dict = _copy_state(net)
    return best


def _train_epoch(net, opt, loss_fn, x, y, rng, batch_size, dev) -> float:
    import torch

    net.train()
    order = rng.permutation(len(x))
    total, seen = 0.0, 0
    for start in range(0, len(x), batch_size):
        idx = np.sort(order[start:start + batch_size])
        if len(idx) < 2 and any(isinstance(m, torch.nn.BatchNorm1d) for m in net):
            continue  # BatchNorm cannot learn from a batch of one row
        xb = torch.from_numpy(x[idx]).to(dev, non_blocking=True)
        yb = torch.from_numpy(y[idx]).to(dev, non_blocking=True)
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(net(xb), yb)
        loss.backward()
        opt.step()
        total += float(loss.detach()) * len(idx)
        seen += len(idx)
    return total / max(seen, 1)


def _loss(net, loss_fn, x, y, dev) -> float:
    import torch

    net.eval()
    total = 0.0
    with torch.no_grad():
        for start in range(0, len(x), PREDICT_BATCH):
            xb = torch.from_numpy(np.ascontiguousarray(x[start:start + PREDICT_BATCH],
                                                       dtype=np.float32)).to(dev)
            yb = torch.from_numpy(np.asarray(y[start:start + PREDICT_BATCH],
                                             dtype=np.int64)).to(dev)
            total += float(loss_fn(net(xb), yb)) * len(xb)
    return total / max(len(x), 1)


def _copy_state(net) -> dict:
    return {k: v.detach().to("cpu").clone() for k, v in net.state_dict().items()}


def load_net(state_dict: dict, n_in: int, n_out: int, params: NetParams, device: str = "cpu"):
    """A network in eval mode with the given weights."""
    net = build_net(n_in, n_out, params)
    net.load_state_dict(state_dict)
    return net.to(resolve_device(device)).eval()


def predict_proba(net, x: np.ndarray, device: str = "cpu") -> np.ndarray:
    """Class probabilities (float64, n x classes) in batches."""
    import torch

    dev = next(net.parameters()).device if device == "auto" else resolve_device(device)
    net = net.to(dev).eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(x), PREDICT_BATCH):
            xb = torch.from_numpy(np.ascontiguousarray(x[start:start + PREDICT_BATCH],
                                                       dtype=np.float32)).to(dev)
            out.append(torch.softmax(net(xb), dim=1).to("cpu").double().numpy())
    if not out:
        return np.zeros((0, net[-1].out_features))
    return np.concatenate(out)
