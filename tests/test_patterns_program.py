import numpy as np
import pytest
import torch

import lightning_convex as lc
from lightning_convex.patterns import PatternSet


def network_Q(net):
    """q_kj = w3_k w2_kj W1_k[:, j] (MATH.md section 2), shape (K, m, d')."""
    W1 = net.W1.detach().double()
    w2 = net.second_layer().detach().double()
    return net.w3.detach().double()[:, None, None] * w2[:, :, None] * W1.transpose(1, 2)


def numpy_patterns(X, W1, w2, w3):
    """D1, D2, s, sig of MATH.md section 2 in plain numpy, sign(0) = +1."""
    pre = np.einsum("nd,kdm->knm", X, W1)
    D1 = pre >= 0
    D2 = np.einsum("knm,km->kn", np.maximum(pre, 0), w2) >= 0
    sig = np.where(w3 >= 0, 1, -1)
    s = sig[:, None] * np.where(w2 >= 0, 1, -1)
    return D1, D2, s, sig


@pytest.mark.parametrize("depth,m,bias", [(3, 3, False), (3, 3, True), (2, 1, False), (2, 1, True)])
def test_forward_identity_and_feasibility(depth, m, bias):
    torch.manual_seed(7)
    X = torch.randn(50, 4, dtype=torch.float64)
    net = lc.ParallelReLU(4, m, 5, depth=depth, bias=bias).double()
    pats = lc.patterns_of(net, X)
    assert len(pats) == 5 and pats.depth == depth and pats.bias == bias
    prog = lc.RestrictedProgram(X, torch.zeros(50), pats, 0.1)
    Q = network_Q(net)
    f = net(X).detach()
    # f = sum_p D2 sum_j D1 X q   (MATH.md section 2)
    assert torch.allclose(prog.predict(Q), f, rtol=0, atol=1e-12)
    # the network lies in its own cones, and R_path = sum ||q_pj||
    assert prog.constraint_violation(Q) <= 1e-12
    if net.regularization == "path":
        assert abs(float(prog.group_norms(Q).sum()) - float(net.regularizer())) <= 1e-12


def test_patterns_match_numpy_and_chunking():
    torch.manual_seed(3)
    X = torch.randn(37, 3, dtype=torch.float64)
    net = lc.ParallelReLU(3, 4, 6).double()
    with torch.no_grad():
        net.w2[0, 1] = 0.0  # sign(0) = +1
        net.w3[2] = 0.0
    W1 = net.W1.detach().numpy()
    D1, D2, s, sig = numpy_patterns(X.numpy(), W1, net.w2.detach().numpy(), net.w3.detach().numpy())
    for chunk in (5, 8192):
        pats = lc.patterns_of(net, X, chunk_size=chunk)
        np.testing.assert_array_equal(pats.D1.numpy(), D1)
        np.testing.assert_array_equal(pats.D2.numpy(), D2)
        np.testing.assert_array_equal(pats.s.numpy(), s)
        np.testing.assert_array_equal(pats.sig.numpy(), sig)


def test_union_unique_and_index():
    torch.manual_seed(4)
    X = torch.randn(30, 3)
    net = lc.ParallelReLU(3, 2, 4)
    own = lc.patterns_of(net, X)
    doubled = lc.concatenate([own, own])
    assert len(doubled) == 8
    uniq = doubled.unique()
    assert len(uniq) == 4
    assert torch.equal(uniq.D1, own.D1)
    sampled = lc.sample_patterns(X, 20, 2, generator=torch.Generator().manual_seed(0))
    both = own.union(sampled)
    assert len(both) <= 4 + len(sampled)
    assert own.index_in(both) == [0, 1, 2, 3]
    # a pattern differing only in one sign is a different pattern
    flipped = PatternSet(own.D1[:1], own.D2[:1], -own.s[:1], -own.sig[:1], own.bias)
    assert flipped.index_in(own) == [-1]
    # brute-force distinctness of the union
    rows = {(tuple(both.D1[i].flatten().tolist()), tuple(both.D2[i].tolist()),
             tuple(both.s[i].tolist()), int(both.sig[i])) for i in range(len(both))}
    assert len(rows) == len(both)


def test_sample_patterns_properties():
    X = torch.randn(40, 5)
    a = lc.sample_patterns(X, 30, 3, generator=torch.Generator().manual_seed(1))
    b = lc.sample_patterns(X, 30, 3, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a.D1, b.D1) and torch.equal(a.D2, b.D2)
    assert 0 < len(a) <= 30
    assert not bool(a.is_degenerate().any())
    c = lc.sample_patterns(X, 10, 1, depth=2, bias=True)
    assert c.D2 is None and c.bias and torch.equal(c.s[:, 0], c.sig)


def test_adjoints_and_explicit_matrices_agree():
    torch.manual_seed(5)
    X = torch.randn(25, 3, dtype=torch.float64)
    y = torch.randn(25, dtype=torch.float64)
    pats = lc.sample_patterns(X, 6, 3, bias=True, generator=torch.Generator().manual_seed(2))
    prog = lc.RestrictedProgram(X, y, pats, 0.2)
    Q = torch.randn(prog.shape, dtype=torch.float64)
    v = torch.randn(25, dtype=torch.float64)
    # <A Q, v> = <Q, A^T v>
    assert abs(float(prog.predict(Q) @ v) - float((Q * prog.predict_adjoint(v)).sum())) < 1e-10
    R1, R2 = prog.cone_rows(Q)
    mu1, mu2 = torch.rand_like(R1), torch.rand_like(R2)
    lhs = float((R1 * mu1).sum() + (R2 * mu2).sum())
    assert abs(lhs - float((Q * prog.cone_adjoint(mu1, mu2)).sum())) < 1e-10
    A = prog.prediction_matrix()
    G = prog.cone_matrix()
    q = prog.flatten(Q)
    np.testing.assert_allclose(A @ q, prog.predict(Q).numpy(), atol=1e-12)
    np.testing.assert_allclose(G @ q, np.r_[R1.numpy().ravel(), R2.numpy().ravel()], atol=1e-12)
    m1, m2 = prog.split_multipliers(np.r_[mu1.numpy().ravel(), mu2.numpy().ravel()])
    assert torch.equal(m1, mu1) and torch.equal(m2, mu2)


def test_program_bad_input():
    X = torch.randn(10, 3)
    y = torch.randn(10)
    pats = lc.patterns_of(lc.ParallelReLU(3, 2, 3), X)
    with pytest.raises(ValueError, match="empty"):
        lc.RestrictedProgram(X, y, pats.select(torch.zeros(0, dtype=torch.long)), 0.1)
    with pytest.raises(ValueError, match="beta"):
        lc.RestrictedProgram(X, y, pats, 0.0)
    with pytest.raises(ValueError, match="rows"):
        lc.RestrictedProgram(X[:9], y[:9], pats, 0.1)
    with pytest.raises(ValueError, match="entries but X has"):
        lc.RestrictedProgram(X, y[:9], pats, 0.1)
    Xn = X.clone()
    Xn[3, 1] = float("inf")
    with pytest.raises(ValueError, match="NaN or inf"):
        lc.RestrictedProgram(Xn, y, pats, 0.1)
    with pytest.raises(TypeError, match="PatternSet"):
        lc.RestrictedProgram(X, y, "patterns", 0.1)
    prog = lc.RestrictedProgram(X, y, pats, 0.1)
    with pytest.raises(ValueError, match="Q must have shape"):
        prog.objective(torch.zeros(1, 2, 3))
