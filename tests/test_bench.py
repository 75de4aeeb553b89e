"""`cfc-bench bench`: CSV layout, ratios, sweeps and plots, argument errors, memory meter.

Tiny sizes and two timed runs: these tests check what is recorded, never how fast.
"""

from __future__ import annotations

import csv
import json
import math
import mmap
import re
from pathlib import Path

import pytest
import torch
from test_parity_ncps import copy_into_ncps  # tests/ is on the path (pytest's rootdir mode)

from cfc_bench.bench.cli import main, parse_args, parse_sets, setting_names
from cfc_bench.bench.matmul_floor import MatmulReplay, Operand, record
from cfc_bench.bench.measure import timed
from cfc_bench.bench.memory import LiveTensorBytes
from cfc_bench.bench.ncps import NcpsSequence, ncps_model
from cfc_bench.bench.output import COLUMNS, add_ratios, format_table, plot_sweep
from cfc_bench.config import compose, config_names
from cfc_bench.models.base import SequenceIO
from cfc_bench.models.cfc import CfCConfig, HeadActivation
from cfc_bench.text import plural

TINY = ["--batch", "3", "--steps", "4", "--inputs", "2", "--hidden", "5", "--threads", "1"]
TINY += ["--repeats", "2", "--warmup", "1"]


def read(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def bench_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bench")
    args = [*TINY, "--models", "cfc,lstm,ncps_cfc", "--out", str(out), "--tag", "tiny"]
    args += ["--set", "model.backbone_layers=2", "--set", "model.backbone_activation=silu"]
    assert main(args) == 0
    return out / "tiny.csv"


def test_csv_has_every_column_and_one_row_per_model(bench_csv: Path) -> None:
    with open(bench_csv, newline="") as f:
        assert next(csv.reader(f)) == COLUMNS
    rows = read(bench_csv)
    assert [r["model"] for r in rows] == ["cfc", "lstm", "ncps_cfc"]
    assert [r["implementation"] for r in rows] == ["cfc_bench", "cfc_bench", "ncps"]
    for r in rows:
        assert r["status"] == "ok" and r["timed_runs"] == "2"
        assert (r["batch"], r["steps"], r["inputs"], r["hidden"]) == ("3", "4", "2", "5")
        assert r["threads"] == "1" and r["repeats"] == "2" and r["device"] == "cpu"
        assert r["allocator"] in ("retained", "system")  # --retain-freed-memory
        assert r["flush_denormal"] in ("True", "False")  # --flush-denormal
        assert r["machine"] and r["torch"] == torch.__version__ and r["started"]
        for key in ("train_ms", "infer_ms", "train_cpu_ms", "infer_cpu_ms", "peak_mem_mib"):
            assert float(r[key]) > 0, key
        assert float(r["train_ms_min"]) <= float(r["train_ms"]) <= float(r["train_ms_max"])
        assert float(r["train_faults"]) >= 0
        assert json.loads(r["settings"])["hidden"] == 5
    cfc, lstm, ncps = rows
    for r in (cfc, ncps):  # their matrix products, timed alone
        assert float(r["matmul_ms"]) > 0 and int(r["matmul_calls"]) > 0
    # --set reaches the models whose schema has the key (the ncps row copies cfc's config)
    for r in (cfc, ncps):
        settings = json.loads(r["settings"])
        assert settings["backbone_layers"] == 2 and settings["backbone_activation"] == "silu"
        assert r["overrides"] == "model.backbone_layers=2 model.backbone_activation=silu"
    assert lstm["overrides"] == "" and "backbone_layers" not in json.loads(lstm["settings"])
    assert cfc["params"] == ncps["params"]  # the same network


def test_ratios_divide_by_the_cfc_row(bench_csv: Path) -> None:
    rows = read(bench_csv)
    cfc = next(r for r in rows if r["model"] == "cfc")
    for r in rows:
        for kind in ("train", "infer"):
            expected = float(r[f"{kind}_ms"]) / float(cfc[f"{kind}_ms"])
            assert float(r[f"{kind}_vs_cfc"]) == pytest.approx(expected, rel=1e-4)
        assert r["baseline"] == "cfc"
    assert float(cfc["train_vs_cfc"]) == 1.0


def test_ratios_compare_rows_of_the_same_sizes_only() -> None:
    def row(model: str, hidden: int, train: float, infer: float) -> dict:
        return {"model": model, "batch": 1, "steps": 1, "inputs": 1, "hidden": hidden} | {
            "train_ms": train,
            "infer_ms": infer,
        }

    rows = [row("cfc", 8, 2.0, 1.0), row("ltc", 8, 5.0, 4.0), row("cfc", 16, 4.0, 2.0)]
    rows += [row("ltc", 16, 6.0, 1.0), row("ltc", 32, 1.0, 1.0)]
    add_ratios(rows, "cfc")
    assert [r["train_vs_cfc"] for r in rows[:4]] == [1.0, 2.5, 1.0, 1.5]
    assert [r["infer_vs_cfc"] for r in rows[:4]] == [1.0, 4.0, 1.0, 0.5]
    assert math.isnan(rows[4]["train_vs_cfc"])  # no CfC measured at hidden=32


def test_sweep_writes_one_csv_and_a_log_log_png(tmp_path: Path) -> None:
    args = [*TINY, "--models", "cfc,lstm", "--sweep", "hidden=4,8", "--no-memory"]
    assert main([*args, "--out", str(tmp_path), "--figures", str(tmp_path / "fig")]) == 0
    rows = read(tmp_path / "sweep_hidden.csv")
    assert [(r["model"], r["hidden"], r["sweep"]) for r in rows] == [
        ("cfc", "4", "hidden"),
        ("lstm", "4", "hidden"),
        ("cfc", "8", "hidden"),
        ("lstm", "8", "hidden"),
    ]
    assert all(r["peak_mem_mib"] == "" for r in rows)  # --no-memory
    png = tmp_path / "fig" / "scaling_hidden.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    png.unlink()
    assert main(["--plot", str(tmp_path / "sweep_hidden.csv"), "--figures", str(png.parent)]) == 0
    assert png.exists()


def test_plot_rejects_a_csv_that_is_not_a_sweep(bench_csv: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a sweep"):
        plot_sweep(bench_csv, tmp_path)


@pytest.mark.parametrize(
    "args,message",
    [
        (["--models", "cfc,nope"], "unknown model 'nope'"),
        (["--models", "cfc", "--set", "model.no_such_key=1"], "no selected model has this field"),
        (["--models", "lstm", "--set", "model.backbone_layers=2"], "no selected model"),
        (["--models", "cfc", "--set", "model.backbone_activation=swish"], "invalid model"),
        (["--models", "cfc", "--set", "model.hidden=8"], "use --hidden"),
        (["--models", "cfc", "--set", "backbone_layers"], "KEY=VALUE"),
        (["--models", "cfc:ode.solver=rk4"], "has no field 'ode.solver'"),
        (["--models", "cfc,cfc"], "twice"),
        (["--sweep", "width=1,2"], "DIM=V1,V2"),
        (["--sweep", "hidden=4,x"], "positive integers"),
        (["--batch", "0"], "--batch must be a positive integer"),
        (["--device", "tpu"], "--device"),
        (["--batch", "x"], "argument --batch: invalid int value: 'x'"),
        (["--setting", "a", "--warmup", "-1"], "--warmup must be 0 or more"),
    ],
)
def test_bad_arguments_fail_with_a_clear_message(
    args: list[str], message: str, capsys: pytest.CaptureFixture, tmp_path: Path
) -> None:
    assert main([*args, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "cfc-bench bench: error:" in err and message in err
    assert not list(tmp_path.iterdir())  # nothing written


def test_unknown_model_lists_the_choices(capsys: pytest.CaptureFixture) -> None:
    assert main(["--models", "nope"]) == 2
    err = capsys.readouterr().err
    assert all(name in err for name in [*config_names("model"), "ncps_cfc"])


@pytest.mark.parametrize(
    "mixed, head",
    [(False, "tanh"), (True, "tanh"), (False, "lecun_tanh")],
    ids=["cfc", "cfc_mmrnn", "lecun_heads"],
)
def test_ncps_row_runs_the_same_maths_as_our_cfc(mixed: bool, head: str) -> None:
    """The ncps driver with our weights copied in gives our outputs (B != H, irregular dt)."""
    torch.manual_seed(0)
    cfg = CfCConfig(
        hidden=16,
        backbone_units=12,
        backbone_activation="silu",
        mixed_memory=mixed,
        head_activation=HeadActivation(head),
    )
    ours = cfg.build(SequenceIO(3, 1)).double()
    theirs = ncps_model(cfg, 3).double()
    assert isinstance(theirs, NcpsSequence)
    copy_into_ncps(ours, theirs.cell, theirs.lstm, theirs.fc)
    x = torch.randn(5, 7, 3, dtype=torch.float64)
    dt = torch.rand(5, 7, dtype=torch.float64) * 2 + 0.05
    mask = torch.ones(5, 7, dtype=torch.bool)
    torch.testing.assert_close(theirs(x, dt, mask), ours(x, dt, mask), atol=1e-10, rtol=0)


def test_live_tensor_bytes_counts_allocations_until_freed() -> None:
    with LiveTensorBytes() as meter:
        a = torch.ones(1000)  # 4000 bytes
        b = a * 2  # 4000 more
        view = b[:10]  # no allocation
        b.mul_(3)  # in place: none
        del a
        c = b + 1  # 4000: 8000 live again
        assert meter.live == 8000
        del b, c, view
    assert meter.peak == 8000 and meter.live == 0


def test_a_model_over_budget_is_timed_once(tmp_path: Path) -> None:
    args = [*TINY, "--models", "cfc,lstm", "--budget", "0", "--out", str(tmp_path)]
    assert main([*args, "--tag", "slow"]) == 0
    for r in read(tmp_path / "slow.csv"):
        assert r["timed_runs"] == "1" and r["status"].startswith("ok, timed once")
        assert float(r["train_ms"]) > 0 and r["peak_mem_mib"] == ""


def test_a_failing_model_fails_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import cfc_bench.bench.measure as bench

    def train_step(entry, batch):  # e.g. out of memory, for the LSTM only
        if entry.spec.label == "lstm":
            raise RuntimeError("DefaultCPUAllocator: can't allocate memory")
        real_train_step(entry, batch)

    real_train_step = bench.train_step
    monkeypatch.setattr(bench, "train_step", train_step)
    assert main([*TINY, "--models", "cfc,lstm", "--out", str(tmp_path), "--tag", "f"]) == 0
    cfc, lstm = read(tmp_path / "f.csv")
    assert cfc["status"] == "ok" and float(cfc["train_ms"]) > 0
    assert lstm["status"] == "failed: RuntimeError: DefaultCPUAllocator: can't allocate memory"
    assert lstm["train_ms"] == lstm["train_vs_cfc"] == "" and lstm["timed_runs"] == "0"
    assert int(lstm["params"]) > 0  # counted when built


def test_matmul_floor_records_the_products_of_a_cfc_step_and_replays_them() -> None:
    """Each step adds the products of the CfC equations: forward, the first layer's state
    share, every further backbone layer and the fused heads (layers + 1); backward, one
    weight-gradient and one data-gradient product for each of them (2 * (layers + 1))."""
    layers = 2
    torch.manual_seed(0)
    model = CfCConfig(hidden=5, backbone_units=4, backbone_layers=layers).build(SequenceIO(2, 1))

    def calls(steps: int) -> list:
        x, dt = torch.randn(3, steps, 2), torch.rand(3, steps)
        mask = torch.ones(3, steps, dtype=torch.bool)
        return record(lambda: model(x, dt, mask).square().sum().backward())

    short, long = calls(3), calls(6)
    assert len(long) - len(short) == 3 * 3 * (layers + 1)
    replay = MatmulReplay(long)
    assert replay.count == len(long)
    assert layouts(record(replay)) == layouts(long)


def layouts(calls: list) -> list:
    return [(f, [t.layout for t in a if isinstance(t, Operand)]) for f, a, _ in calls]


def test_matmul_floor_is_none_where_a_fused_kernel_hides_the_products() -> None:
    """torch's LSTM runs its products inside one oneDNN kernel here: no floor rather than a
    wrong one (a build without oneDNN shows them: more than the readout's three)."""
    model = compose(["model=lstm"]).model.build(SequenceIO(2, 1))
    x, dt, mask = torch.randn(3, 4, 2), torch.rand(3, 4), torch.ones(3, 4, dtype=torch.bool)
    calls = record(lambda: model(x, dt, mask).sum().backward())
    if torch.backends.mkldnn.is_available():
        assert calls is None
    else:
        assert calls is not None and len(calls) > 3


def test_timed_counts_the_page_faults_of_fresh_memory() -> None:
    """A step that writes 64 MiB of memory fresh from the kernel takes thousands of faults
    (one per 4 KiB page, or per huge page); one that allocates nothing takes almost none."""

    def touch_fresh_pages() -> None:
        with mmap.mmap(-1, 64 << 20) as buf:  # anonymous: every page faults when first written
            buf.write(b"x" * (64 << 20))

    assert timed(touch_fresh_pages, torch.device("cpu"))[2] >= 32
    assert timed(lambda: None, torch.device("cpu"))[2] < 32


# The Makefile's recipes before the settings became files (BENCH_REPEATS=5).
RECIPES = {
    "a": "--tag a_cfc_B128_T100_I82_H256 --batch 128 --steps 100 --inputs 82 --hidden 256 "
    "--models cfc,ncps_cfc,ode_rnn,ode_rnn:ode.solver=dopri5,lstm --repeats 5 "
    "--set model.backbone_layers=2 --set model.backbone_units=64 "
    "--set model.backbone_activation=silu",
    "b": "--tag b_cfc_B256_T64_I17_H64 --batch 256 --steps 64 --inputs 17 --hidden 64 "
    "--models cfc,ncps_cfc,lstm --repeats 10 --set model.backbone_layers=1 "
    "--set model.backbone_units=256 --set model.backbone_activation=silu",
    "c": "--tag c_ltc_B128_T100_I82_H64 --batch 128 --steps 100 --inputs 82 --hidden 64 "
    "--models cfc,ltc,ncps_ltc,ode_rnn,ode_rnn:ode.solver=dopri5,lstm --repeats 3",
    "physionet": "--tag p_physionet_B128_T202_I82_H64 --batch 128 --steps 202 --inputs 82 "
    "--observed 0.14 --hidden 64 --models cfc,lstm,gru_d,gru_d_latent,rnn_delta_t,rnn_impute,"
    "rnn_expdecay,phased_lstm,ode_rnn,ode_rnn_latent,latent_ode_rnn,latent_ode_ode,rnn_vae,mtan,"
    "ip_nets,seft,ltc:flavour=pytorch_reference --repeats 3",
    "scaling_hidden": "--tag scaling_hidden --sweep hidden=32,64,128,256,512,1024 --batch 128 "
    "--steps 100 --inputs 82 --models cfc,ltc,ode_rnn,lstm --repeats 3 --no-memory",
    "scaling_steps": "--tag scaling_steps --sweep steps=16,32,64,128,256,512,1024 --batch 128 "
    "--hidden 64 --inputs 82 --models cfc,ltc,ode_rnn,lstm --repeats 3 --no-memory",
}


def test_every_setting_is_a_recipe_of_the_makefile() -> None:
    assert setting_names() == sorted(RECIPES)


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_a_setting_gives_its_recipes_arguments(name: str) -> None:
    from_file = vars(parse_args(["--setting", name, "--threads", "1"]))
    recipe = vars(parse_args([*RECIPES[name].split(), "--threads", "1"]))
    assert from_file.pop("setting") == name and recipe.pop("setting") is None
    assert from_file == recipe


def test_observed_inputs_are_values_and_mask_halves() -> None:
    from cfc_bench.bench.measure import Sizes, make_batch

    batch = make_batch(Sizes(64, 50, 82, 8), torch.device("cpu"), seed=0, observed=0.14)
    values, seen = batch.x[..., :41], batch.x[..., 41:]
    assert set(seen.unique().tolist()) == {0.0, 1.0}
    assert abs(float(seen.mean()) - 0.14) < 0.01  # 131,200 draws
    assert (values[seen == 0] == 0).all() and (values[seen == 1] != 0).all()
    dense = make_batch(Sizes(64, 50, 82, 8), torch.device("cpu"), seed=0)
    assert (dense.x != 0).all()


@pytest.mark.parametrize("argv", [["--observed", "0"], ["--observed", "0.5", "--inputs", "17"]])
def test_observed_needs_a_fraction_and_even_inputs(argv: list[str], capsys) -> None:
    assert main(["--models", "cfc", "--repeats", "1", *argv]) != 0
    assert "the fraction must be in (0, 1] and the inputs even" in capsys.readouterr().err


def test_options_override_the_setting() -> None:
    args = parse_args(["--setting", "a", "--hidden", "64", "--models", "cfc,ncps_cfc"])
    assert (args.hidden, args.batch, args.models) == (64, 128, "cfc,ncps_cfc")
    args = parse_args(["--setting", "b", "--set", "model.backbone_units=32", "--no-memory"])
    assert parse_sets(args.set) == [
        ("backbone_layers", "1"),
        ("backbone_units", "32"),  # replaces the setting's 256, in its place
        ("backbone_activation", "silu"),
    ]
    assert args.memory is False and args.out == "outputs/bench"


@pytest.mark.parametrize(
    "text,message",
    [
        ("hiden: 8\n", "unknown key 'hiden'"),
        ("out: results/bench\n", "out is not part of a setting; give --out instead"),
        ("tag:\n", "tag has no value"),
        ("batch: many\n", "invalid int value: 'many'"),
        ("memory: 0\n", "memory takes true or false"),
        ("- batch\n", "expected a mapping"),
    ],
)
def test_a_bad_setting_file_names_itself_and_the_key(
    text: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    setting = tmp_path / "mine.yaml"
    setting.write_text(text)
    assert main(["--setting", str(setting), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"cfc-bench bench: error: --setting {setting}" in err and message in err
    assert not (tmp_path / "out").exists()


def test_an_unknown_setting_lists_the_settings(capsys: pytest.CaptureFixture) -> None:
    assert main(["--setting", "d"]) == 2
    assert "no such setting; choose from a, b, c, physionet, scaling_hidden, scaling_steps" in (
        capsys.readouterr().err
    )


def test_default_output_is_outputs_bench_not_the_committed_results(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main([*TINY, "--models", "cfc", "--no-memory", "--no-matmul-floor"]) == 0
    assert [p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.csv")] == [
        "outputs/bench/bench_B3_T4_I2_H5.csv"
    ]
    assert "wrote outputs/bench/bench_B3_T4_I2_H5.csv" in capsys.readouterr().out


def test_progress_names_every_model_and_repeat_on_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    args = [*TINY, "--models", "cfc,lstm", "--out", str(tmp_path), "--tag", "p"]
    assert main(args) == 0
    lines = [
        re.split(r":| \.\.\.", line)[0].strip() for line in capsys.readouterr().err.splitlines()
    ]
    expected = ["warm-up cfc", "warm-up lstm", "repeat 1/2 cfc", "repeat 1/2 lstm"]
    expected += ["repeat 2/2 cfc", "repeat 2/2 lstm", "peak memory cfc", "peak memory lstm"]
    assert [line for line in lines if line in expected] == expected


def test_the_header_counts_threads_in_words(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    args = [*TINY, "--models", "cfc", "--no-memory", "--no-matmul-floor", "--out", str(tmp_path)]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "(cpu, 1 thread, torch" in err and "threads" not in err
    assert [plural(n, "thread") for n in (1, 2)] == ["1 thread", "2 threads"]


def test_a_model_failing_after_a_timed_step_shows_no_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """Out of memory at its second timed training step (its first ran): no time, no ratio."""
    import cfc_bench.bench.measure as bench

    calls = {"lstm": 0}

    def train_step(entry, batch):
        if entry.spec.label == "lstm":
            calls["lstm"] += 1
            if calls["lstm"] == 3:  # warm-up, first timed run, then this one
                raise RuntimeError("DefaultCPUAllocator: can't allocate memory")
        real_train_step(entry, batch)

    real_train_step = bench.train_step
    monkeypatch.setattr(bench, "train_step", train_step)
    args = [*TINY, "--models", "cfc,lstm", "--out", str(tmp_path), "--tag", "late"]
    assert main(args) == 0
    cfc, lstm = read(tmp_path / "late.csv")
    assert lstm["status"].startswith("failed: RuntimeError") and lstm["timed_runs"] == "0"
    assert all(lstm[k] == "" for k in ("train_ms", "infer_ms", "train_vs_cfc", "infer_vs_cfc"))
    assert float(cfc["train_ms"]) > 0
    (line,) = [s for s in capsys.readouterr().out.splitlines() if s.startswith("lstm ")]
    assert line.split()[2:9] == ["-"] * 7  # params, then no time, ratio, floor or memory


def table_row(model: str, status: str, train: float, infer: float) -> dict:
    return {
        "model": model,
        "status": status,
        "params": 10,
        "baseline": "cfc",
        **dict(train_ms=train, infer_ms=infer, matmul_ms=math.nan, train_cpu_ms=train),
        **dict(train_vs_cfc=math.nan, infer_vs_cfc=math.nan, peak_mem_mib=math.nan),
    }


def test_ncps_over_ours_is_printed_only_where_both_ran() -> None:
    ran = [table_row("ltc", "ok", 10.0, 4.0), table_row("ncps_ltc", "ok", 40.0, 6.0)]
    assert format_table(ran).splitlines()[-1] == (
        "ncps_ltc / ltc: training step 4.00×, inference 1.50× (above 1: ours is faster)"
    )
    for failing in (0, 1):
        rows = [dict(r) for r in ran]
        rows[failing]["status"] = "failed: RuntimeError: out of memory"
        table = format_table(rows)
        assert "ncps_ltc / ltc" not in table
        # a failed row's times, as a CSV written before this rule may hold, are not shown
        assert ("40.0" in table, "10.0" in table) == (failing == 0, failing == 1)
