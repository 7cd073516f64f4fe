"""The command line's jobs on small settings: they run, write what they promise, and what they
report satisfies properties that can fail (valid lower bounds, convex <= SGD)."""

import csv

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
