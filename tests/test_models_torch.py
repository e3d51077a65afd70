"""The PyTorch networks: shapes, early stopping, devices, weights. CPU only."""

from __future__ import annotations

import numpy as np
import pytest

from mqttids.models import torch_nets
from mqttids.models.errors import DeviceError

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch


def _blobs(n=300, d=5, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = rng.standard_normal((n, d)).astype(np.float32) + 3 * y[:, None]
    return x, y


def test_shallow_net_has_one_hidden_layer_and_deep_three_with_norm_and_dropout():
    shallow = torch_nets.build_net(10, 6, torch_nets.GRIDS["mlp"][0])
    deep = torch_nets.build_net(10, 6, torch_nets.GRIDS["dnn"][0])
    assert sum(isinstance(m, torch.nn.Linear) for m in shallow) == 2
    assert sum(isinstance(m, torch.nn.Linear) for m in deep) >= 4
    assert any(isinstance(m, torch.nn.BatchNorm1d) for m in deep)
    assert any(isinstance(m, torch.nn.Dropout) for m in deep)


def test_every_deep_config_keeps_norm_dropout_and_depth():
    for p in torch_nets.GRIDS["dnn"]:
        assert len(p.hidden) >= 3 and p.norm and p.dropout > 0
    for p in torch_nets.GRIDS["mlp"]:
        assert len(p.hidden) == 1


def test_a_network_learns_separable_classes():
    x, y = _blobs()
    fit = torch_nets.fit_net(x, y, torch_nets.NetParams(hidden=(16,), lr=0.03, batch_size=32),
                             n_classes=6, max_epochs=30, x_val=x, y_val=y)
    net = torch_nets.load_net(fit.state_dict, 5, 6, torch_nets.NetParams(hidden=(16,)))
    assert (torch_nets.predict_proba(net, x).argmax(axis=1) == y).mean() > 0.95
    assert fit.rows_per_s > 0


def test_training_stops_when_validation_loss_stops_improving():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((200, 8)).astype(np.float32)
    y = rng.integers(0, 6, 200)  # noise: validation loss rises as the net memorises
    xv, yv = rng.standard_normal((100, 8)).astype(np.float32), rng.integers(0, 6, 100)
    fit = torch_nets.fit_net(x, y, torch_nets.NetParams(hidden=(256,), lr=0.01, batch_size=32),
                             n_classes=6, max_epochs=60, patience=2, x_val=xv, y_val=yv)
    assert fit.epochs_run < 60
    assert fit.epochs_run == fit.best_epoch + 2
    losses = [h["val_loss"] for h in fit.history]
    assert min(losses) == losses[fit.best_epoch - 1]


def test_without_validation_it_runs_exactly_the_epochs_asked():
    x, y = _blobs(100)
    fit = torch_nets.fit_net(x, y, torch_nets.NetParams(hidden=(8,)), n_classes=6, max_epochs=3)
    assert fit.epochs_run == 3 and fit.best_epoch == 3 and len(fit.history) == 3


def test_weights_load_back_with_weights_only(tmp_path):
    x, y = _blobs(100)
    params = torch_nets.GRIDS["dnn"][0]
    fit = torch_nets.fit_net(x, y, params, n_classes=6, max_epochs=2)
    torch.save(fit.state_dict, tmp_path / "w.pt")
    state = torch.load(tmp_path / "w.pt", weights_only=True)
    a = torch_nets.predict_proba(torch_nets.load_net(fit.state_dict, 5, 6, params), x)
    b = torch_nets.predict_proba(torch_nets.load_net(state, 5, 6, params), x)
    assert np.array_equal(a, b)
    assert np.allclose(a.sum(axis=1), 1.0)


def test_params_round_trip_through_json():
    p = torch_nets.GRIDS["dnn"][1]
    assert torch_nets.NetParams.from_json(p.to_json()) == p


def test_unknown_or_absent_devices_are_refused():
    with pytest.raises(DeviceError, match="unknown device 'gpu'"):
        torch_nets.resolve_device("gpu")
    assert torch_nets.resolve_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="no CUDA device"):
            torch_nets.resolve_device("cuda")
        assert torch_nets.resolve_device("auto").type == "cpu"


def test_class_weights_favour_rare_classes_and_average_one():
    w = torch_nets.class_weights(np.array([0] * 90 + [1] * 10), 6)
    assert w[1] > w[0] > 0
    assert w[2:].tolist() == [0, 0, 0, 0]
    assert w[:2].mean() == pytest.approx(1.0)
