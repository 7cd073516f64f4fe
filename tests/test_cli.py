"""The command line's jobs on small settings: they run, write what they promise, and what they
report satisfies properties that can fail (valid lower bounds, convex <= SGD)."""

import csv
import math

import pytest

from lightning_convex.cli import build_parser, main


def read_csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_parser_knows_the_commands():
    parser = build_parser()
    assert parser.parse_args(["demo"]).command == "demo"
    args = parser.parse_args(["reproduce", "table1", "--data-dir", "x", "--out", "t.csv"])
    assert args.experiment == "table1" and args.data_dir == "x"
    assert parser.parse_args(["reproduce", "figure4", "--K", "1", "2"]).K == [1, 2]
    assert parser.parse_args(["reproduce", "figure5", "--methods", "sgd"]).methods == ["sgd"]
    with pytest.raises(SystemExit):
        parser.parse_args(["reproduce", "table2"])


def test_demo_small(tmp_path):
    assert main(["demo", "--out", str(tmp_path), "--epochs", "2", "--certify-every", "1",
                 "--warm-every", "1", "--max-rounds", "2", "--no-progress"]) == 0
    rows = read_csv(tmp_path / "demo.csv")
    assert {r["method"] for r in rows} == {"sgd", "hybrid"}
    for r in rows:
        assert float(r["lower_bound"]) <= float(r["objective"]) + 1e-9
    assert (tmp_path / "demo.png").stat().st_size > 0


def test_table1_one_set(tmp_path, uci_dir):
    out = tmp_path / "t1.csv"
    code = main(["reproduce", "table1", "--data-dir", str(uci_dir), "--out", str(out),
                 "--epochs", "5", "--datasets", "balloons", "--extra-patterns", "10", "--search", "8"])
    rows = read_csv(out)
    assert code == 0 and len(rows) == 1
    assert float(rows[0]["convex_objective"]) <= float(rows[0]["sgd_objective"]) + 1e-12


def test_figure4_small(tmp_path):
    assert main(["reproduce", "figure4", "--out", str(tmp_path), "--K", "2", "--seeds", "1",
                 "--steps", "50", "--hybrid-every", "25", "--max-patterns", "10",
                 "--sampled", "200"]) == 0
    rows = read_csv(tmp_path / "runs.csv")
    assert {r["method"] for r in rows} == {"convex", "sgd", "hybrid"}
    assert all("sampled" in r["scope"] for r in rows)
    assert (tmp_path / "figure4.png").stat().st_size > 0


@pytest.mark.parametrize("argv", [
    ["reproduce", "table1", "--epochs", "-1"],
    ["reproduce", "table1", "--epochs", "0"],
    ["reproduce", "table1", "--search", "-3"],
    ["reproduce", "table1", "--datasets", "iris"],
    ["reproduce", "figure4", "--steps", "0"],
    ["reproduce", "figure4", "--K", "0"],
    ["demo", "--beta", "nan"],
    ["demo", "--beta", "-0.1"],
    ["demo", "--epochs", "1.5"],
    ["demo", "--solver", "gurobi"],
    ["reproduce", "figure5", "--n", "0"],
    ["reproduce", "figure5", "--beta", "nan"],
    ["reproduce", "figure5", "--rho", "-1"],
    ["reproduce", "figure5", "--warm-time", "0"],
    ["reproduce", "figure5", "--convex-lr", "inf"],
    ["reproduce", "figure5", "--epochs", "2.5"],
    ["reproduce", "figure5", "--methods", "adamw"],
])
def test_bad_numbers_are_refused_before_any_work(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(argv)
    assert exc.value.code == 2


def test_unwritable_out_fails_before_training(tmp_path, uci_dir):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(OSError, match="cannot write"):
        main(["reproduce", "table1", "--data-dir", str(uci_dir), "--out", str(blocker / "t1.csv"),
              "--epochs", "1000000", "--datasets", "balloons"])


def test_rows_survive_a_failing_data_set(tmp_path, uci_dir):
    data = tmp_path / "uci"
    data.mkdir()
    for name in ("balloons", "fertility"):
        (data / name).symlink_to(uci_dir / name)
    out = tmp_path / "t1.csv"
    # fertility's folder is missing: balloons' row must still be written
    (data / "fertility").unlink()
    code = main(["reproduce", "table1", "--data-dir", str(data), "--out", str(out), "--epochs", "2",
                 "--datasets", "balloons", "fertility", "--extra-patterns", "0", "--search", "0"])
    assert code == 1
    assert [r["dataset"] for r in read_csv(out)] == ["balloons"]


def test_mistyped_data_variable_is_an_error(monkeypatch):
    from lightning_convex.data import load_uci

    monkeypatch.setenv("LIGHTNING_CONVEX_UCI_DIR", "/no/such/folder")
    with pytest.raises(FileNotFoundError, match="LIGHTNING_CONVEX_UCI_DIR"):
        load_uci("balloons")


def test_malformed_files_are_named(tmp_path, uci_dir):
    from lightning_convex.data import load_uci

    folder = tmp_path / "balloons"
    folder.mkdir()
    (folder / "balloons_R.dat").write_text("header\n1 2 x\n")
    (folder / "conxuntos.dat").write_text((uci_dir / "balloons" / "conxuntos.dat").read_text())
    with pytest.raises(ValueError, match="balloons_R.dat"):
        load_uci("balloons", tmp_path)
    (folder / "balloons_R.dat").write_text((uci_dir / "balloons" / "balloons_R.dat").read_text())
    (folder / "conxuntos.dat").write_text("0 1 2\n")
    with pytest.raises(ValueError, match="conxuntos.dat"):
        load_uci("balloons", tmp_path)
    (folder / "conxuntos.dat").write_text("0 1 999\n3\n")
    with pytest.raises(ValueError, match="conxuntos.dat.*indices"):
        load_uci("balloons", tmp_path)


# -- figure 5 ------------------------------------------------------------------------------------
def write_idx_set(folder, n_train=100, n_test=50, side=4, seed=0):
    """Four tiny IDX files (the Fashion-MNIST layout: side x side uint8 images, labels 0..9, ten
    rows per class per ten rows), each class with its own mean image."""
    import struct

    import numpy as np

    rng = np.random.default_rng(seed)
    means = rng.integers(0, 200, size=(10, side, side))
    folder.mkdir()

    def write(name, array):
        header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
        (folder / name).write_bytes(header + array.astype(np.uint8).tobytes())

    for prefix, count in (("train", n_train), ("t10k", n_test)):
        labels = np.arange(count) % 10
        images = np.clip(means[labels] + rng.integers(0, 56, size=(count, side, side)), 0, 255)
        write(f"{prefix}-images-idx3-ubyte", images)
        write(f"{prefix}-labels-idx1-ubyte", labels)
    return folder


def test_figure5_small(tmp_path):
    from lightning_convex.experiments.figure5 import COLUMNS

    data = write_idx_set(tmp_path / "idx")
    out = tmp_path / "f5"
    assert main(["reproduce", "figure5", "--out", str(out), "--data-dir", str(data), "--n", "60",
                 "--n-test", "30", "--K", "2", "--m", "2", "--epochs", "2", "--batch-size", "20",
                 "--warm-every", "1", "--warm-time", "0.5", "--warm-rounds", "1", "--no-progress"]) == 0
    with open(out / "curves.csv", newline="") as fh:
        assert next(csv.reader(fh)) == COLUMNS
    rows = read_csv(out / "curves.csv")
    assert {r["method"] for r in rows} == {"sgd", "convex", "hybrid"}
    J = {(r["method"], r["class"], int(r["epoch"])): float(r["objective"]) for r in rows}
    for r in rows:
        assert 0.0 <= float(r["train_accuracy"]) <= 1.0 and 0.0 <= float(r["test_accuracy"]) <= 1.0
        assert math.isfinite(float(r["objective"])) and float(r["objective"]) >= 0
        assert float(r["cone_violation"]) >= 0
    for method in ("sgd", "convex", "hybrid"):
        for epoch in range(3):
            parts = [J[(method, str(c), epoch)] for c in range(10)]
            assert J[(method, "all", epoch)] == pytest.approx(sum(parts), rel=1e-12)
        seconds = [float(r["seconds"]) for r in rows if r["method"] == method and r["class"] == "all"]
        assert seconds == sorted(seconds)
    # Q = 0: f = 0, so J = sum_c 1/2 ||y_c||^2 = n / 2, and the argmax picks class 0 (6 of 60 rows)
    start = next(r for r in rows if r["method"] == "convex" and r["class"] == "all" and r["epoch"] == "0")
    assert float(start["objective"]) == 30.0 and float(start["train_accuracy"]) == pytest.approx(0.1)
    for c in map(str, range(10)):
        # same networks and batches until the first warm start (after epoch 1), which never raises J
        assert J[("hybrid", c, 0)] == J[("sgd", c, 0)]
        assert J[("hybrid", c, 1)] <= J[("sgd", c, 1)] * (1 + 1e-9)
    assert (out / "figure5.png").stat().st_size > 0


def test_figure5_convex_loss_and_gradient_match_the_program_written_out():
    """The convex model's predictions and penalised loss gradient against MATH.md section 3
    written out per pattern (masks read directly off the generating weights)."""
    import torch

    from lightning_convex.experiments.figure5 import SampledConvexModel, _PenalizedFit

    torch.manual_seed(0)
    n, d, m, P, rho = 40, 5, 3, 4, 0.7
    X, y = torch.randn(n, d, dtype=torch.float64), torch.randn(n, dtype=torch.float64)
    model = SampledConvexModel(d, m, P, torch.Generator().manual_seed(1)).double()
    with torch.no_grad():
        model.Q.normal_()
    Q = model.Q.detach().clone().requires_grad_(True)
    Xb = torch.cat([X, torch.ones(n, 1, dtype=torch.float64)], dim=1)
    f = torch.zeros(n, dtype=torch.float64)
    penalty = torch.zeros((), dtype=torch.float64)
    for p in range(P):
        pre = Xb @ model.U[p]
        D1 = (pre >= 0).double()
        D2 = ((torch.relu(pre) @ model.w2[p]) >= 0).double()
        sig = 1.0 if model.w3[p] >= 0 else -1.0
        XQ = Xb @ Q[p].T  # (n, m)
        f = f + D2 * (D1 * XQ).sum(dim=1)
        for j in range(m):
            s = sig * (1.0 if model.w2[p, j] >= 0 else -1.0)
            penalty = penalty + torch.relu(-s * (2 * D1[:, j] - 1) * XQ[:, j]).sum()
        penalty = penalty + torch.relu(-sig * (2 * D2 - 1) * (D1 * XQ).sum(dim=1)).sum()
    written_out = 0.5 * (f - y).square().sum() + rho * penalty
    written_out.backward()
    assert torch.allclose(model.outputs(X), f.detach(), rtol=1e-12, atol=1e-12)

    Q2 = model.Q.detach().clone().requires_grad_(True)
    loss = _PenalizedFit.apply(Q2, model.program(X, y, 1.0), rho)
    loss.backward()
    assert loss.item() == pytest.approx(written_out.item(), rel=1e-12)
    assert torch.allclose(Q2.grad, Q.grad, rtol=1e-10, atol=1e-10)


def test_figure5_refuses_before_any_work(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(OSError, match="cannot write"):
        # the data folder does not exist either: the output is checked first
        main(["reproduce", "figure5", "--out", str(blocker / "f5"), "--data-dir", str(tmp_path / "none")])
    data = write_idx_set(tmp_path / "idx")
    with pytest.raises(ValueError, match="subsample size"):
        main(["reproduce", "figure5", "--out", str(tmp_path / "f5"), "--data-dir", str(data), "--n", "101"])
