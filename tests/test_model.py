import numpy as np
import pytest
import torch

import lightning_convex as lc
from conftest import numpy_forward, numpy_objective, params_of

CASES = [(3, 4, False), (3, 4, True), (2, 1, False), (2, 1, True)]


@pytest.mark.parametrize("depth,m,bias", CASES)
@pytest.mark.parametrize("regularization", ["path", "paper"])
def test_forward_and_objective_match_numpy(depth, m, bias, regularization):
    torch.manual_seed(depth * 10 + m + bias)
    X = torch.randn(40, 5, dtype=torch.float64)
    y = torch.randn(40, dtype=torch.float64)
    net = lc.ParallelReLU(5, m, 6, depth=depth, bias=bias, regularization=regularization).double()
    with torch.no_grad():  # scale up so the reference is not dominated by the initialisation
        net.w3.mul_(3.0)
    W1, w2, w3 = params_of(net)
    f = net(X).detach().numpy()
    assert f.shape == (40,)
    np.testing.assert_allclose(f, numpy_forward(X.numpy(), W1, w2, w3, bias), rtol=0, atol=1e-12)
    J = lc.objective(net, X, y, 0.3)
    ref = numpy_objective(X.numpy(), y.numpy(), W1, w2, w3, 0.3, regularization, bias)
    assert isinstance(J, float)
    assert abs(J - ref) <= 1e-9 * max(1.0, abs(ref))


def test_objective_of_float32_network_is_float64():
    torch.manual_seed(0)
    net = lc.ParallelReLU(3, 2, 4)
    X, y = torch.randn(10, 3), torch.randn(10)
    W1, w2, w3 = params_of(net)
    ref = numpy_objective(X.double().numpy(), y.double().numpy(), W1, w2, w3, 0.1, "path")
    assert abs(lc.objective(net, X, y, 0.1) - ref) <= 1e-12 * max(1.0, ref)


def test_paper_form_projection_keeps_unit_frobenius_ball():
    torch.manual_seed(1)
    net = lc.ParallelReLU(4, 3, 5, regularization="paper")
    assert float(net.W1.flatten(1).norm(dim=1).max()) <= 1 + 1e-6
    with torch.no_grad():
        net.W1.mul_(10.0)
        net.W1[0].mul_(1e-3)  # one branch inside the ball stays as it is
    before = net.W1[0].clone()
    net.project_()
    norms = net.W1.flatten(1).norm(dim=1)
    assert float(norms.max()) <= 1 + 1e-6
    assert torch.allclose(norms[1:], torch.ones(4), atol=1e-6)
    assert torch.equal(net.W1[0], before)


def test_path_form_project_is_noop():
    net = lc.ParallelReLU(4, 3, 5)
    with torch.no_grad():
        net.W1.mul_(10.0)
    before = net.W1.clone()
    net.project_()
    assert torch.equal(before, net.W1)


def test_shapes_and_depth2_has_no_w2():
    net = lc.ParallelReLU(5, 7, 10, bias=True)
    assert tuple(net.W1.shape) == (10, 6, 7) and tuple(net.w2.shape) == (10, 7) and tuple(net.w3.shape) == (10,)
    net2 = lc.ParallelReLU(5, 1, 10, depth=2)
    assert net2.w2 is None and tuple(net2.W1.shape) == (10, 5, 1)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(regularization="weight_decay"), "unsupported regularization"),
        (dict(depth=4), "depth"),
        (dict(depth=2), "hidden=1"),
        (dict(branches=0), "branches"),
    ],
)
def test_bad_construction(kwargs, match):
    args = dict(in_features=3, hidden=2, branches=4)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        lc.ParallelReLU(**args)


def test_bad_input_to_forward_and_objective():
    net = lc.ParallelReLU(3, 2, 4)
    with pytest.raises(ValueError, match="shape"):
        net(torch.randn(5, 4))
    X = torch.randn(5, 3)
    with pytest.raises(ValueError, match="4 columns|columns"):
        lc.objective(net, torch.randn(5, 4), torch.randn(5), 0.1)
    with pytest.raises(ValueError, match="entries but X has"):
        lc.objective(net, X, torch.randn(6), 0.1)
    bad = X.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN or inf"):
        lc.objective(net, bad, torch.randn(5), 0.1)
    yinf = torch.randn(5)
    yinf[2] = float("inf")
    with pytest.raises(ValueError, match="NaN or inf"):
        lc.objective(net, X, yinf, 0.1)
    for beta in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="beta"):
            lc.objective(net, X, torch.randn(5), beta)
