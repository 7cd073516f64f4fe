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
