"""ForgettingCurve / SampleGrid: TensorBoard tags and files, exact strength 0, the notebook runs."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import nbformat
import pytest
import torch
from nbclient import NotebookClient
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from legato_pl import ODEAdapterConfig, attach_adapters
from legato_pl.cli import run as run_cli
from legato_pl.models import load_base_model
from legato_pl.sampling import sample

from conftest import randomize_, run_legato

HERE = Path(__file__).parent
REPO = HERE.parent


@pytest.fixture(scope="module")
def curve_run(tiny_base_dir, tmp_path_factory) -> tuple[Path, object]:
    out = tmp_path_factory.mktemp("curve")
    cli = run_cli(["fit", "--config", str(HERE / "configs" / "tiny_unlearn.yaml"), "--config",
                    str(HERE / "configs" / "tiny_curve.yaml"), "--model.init_args.base_model", str(tiny_base_dir),
                    "--trainer.logger.init_args.save_dir", str(out), "--trainer.max_steps", "6"])
    return Path(cli.trainer.log_dir), cli


def test_forgetting_curve_logs_tags_and_csv(curve_run):
    run, cli = curve_run
    events = EventAccumulator(str(run), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    scalars, images = set(events.Tags()["scalars"]), set(events.Tags()["images"])
    for metric in ("ID_forget", "ID_retain", "acc_forget", "acc_retain", "FD_pre", "ID_real_forget"):
        for s in ("0.00", "0.25", "0.50", "0.75", "1.00"):
            assert f"curve/{metric}/strength_{s}" in scalars
    assert {"curve/figure", "curve/samples", "samples/grid"} <= images
    assert [e.step for e in events.Images("samples/grid")] == [2, 4, 6]
    assert {f"val/{k}" for k in ("loss", "forget", "retain", "trajectory", "adjacency")} <= scalars
    rows = list(csv.DictReader((run / "curve.csv").open()))
    # 4 batches per epoch: the validation epoch at step 4, then the end of fit at step 6
    assert [(int(r["step"]), float(r["strength"])) for r in rows] == [
        (step, s) for step in (4, 6) for s in (0.0, 0.25, 0.5, 0.75, 1.0)]
    assert all(float(r["ID_forget"]) == pytest.approx(1.0) for r in rows[::5])  # strength 0 = the before samples


def test_forgetting_curve_under_ddp_matches_one_process(tiny_base_dir, tmp_path):
    """2 CPU processes shard the sampled rows (global seeds), reduce the metrics, and only rank 0 writes."""
    curves = {}
    for devices in (1, 2):
        out = tmp_path / f"d{devices}"
        proc = run_legato(["fit", "--config", str(HERE / "configs" / "tiny_unlearn.yaml"), "--config",
                           str(HERE / "configs" / "tiny_curve.yaml"), "--model.init_args.base_model",
                           str(tiny_base_dir), "--trainer.logger.init_args.save_dir", str(out),
                           "--model.init_args.output_dir", str(out / "adapters"), "--trainer.max_steps", "2"],
                          devices=devices)
        assert proc.returncode == 0, proc.stderr[-3000:]
        (csv_path,) = out.rglob("curve.csv")  # exactly one writer
        curves[devices] = list(csv.DictReader(csv_path.open()))
        assert len(list(out.rglob("events.out.tfevents.*"))) == 1
    one, two = curves[1], curves[2]
    assert [r["strength"] for r in two] == [r["strength"] for r in one] == ["0.0", "0.25", "0.5", "0.75", "1.0"]
    assert set(two[0]) == set(one[0])
    for r1, r2 in zip(one, two):
        for key in r1:  # sums over all rows, not rank 0's half: equal to the single-process sweep
            assert float(r2[key]) == pytest.approx(float(r1[key]), rel=1e-3, abs=1e-4), (key, r1, r2)
    # rank 0 alone would have half the rows: its ID_real_forget (a mean over samples) would differ


def test_strength_zero_samples_equal_base_samples(tiny_base_dir):
    base = load_base_model(tiny_base_dir)
    labels = torch.tensor([0, 1, 2])
    kwargs = dict(null_class=base.null_class, num_inference_steps=3, seed=7)
    reference = sample(base.unet, base.scheduler, labels, **kwargs)
    adapters = attach_adapters(base.unet, ODEAdapterConfig(hidden=8))
    randomize_(adapters)
    assert torch.equal(sample(base.unet, base.scheduler, labels, method=adapters, strength=0.0, **kwargs), reference)
    assert not torch.allclose(sample(base.unet, base.scheduler, labels, method=adapters, strength=1.0, **kwargs),
                              reference)


def test_notebook_runs_headless(curve_run, monkeypatch):
    run, _ = curve_run
    monkeypatch.setenv("LEGATO_RUN_DIR", str(run))
    nb = nbformat.read(REPO / "notebooks" / "forgetting_curves.ipynb", as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(REPO)}}).execute()
    assert (run / "curve.png").is_file()
    assert "last strength grid" in "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                                           for o in c.get("outputs", []))
    assert os.environ["LEGATO_RUN_DIR"] == str(run)


def test_callbacks_package_exports_functions_not_submodules():
    import types

    from legato_pl.callbacks import sample_grid

    assert callable(sample_grid) and not isinstance(sample_grid, types.ModuleType)


@pytest.mark.parametrize("t_end, step, expected", [(1.6, 0.4, [0.0, 0.25, 0.5, 0.75, 1.0]), (1.0, 0.4, [0.0, 0.4, 0.8, 1.0])])
def test_strength_grid_follows_the_ode_time_grid(t_end, step, expected):
    """With t_end not a multiple of step_size the solver's last step is shorter; the sweep has the same points."""
    from legato_pl.evaluation import strength_grid

    from conftest import tiny_unet

    adapters = attach_adapters(tiny_unet(), ODEAdapterConfig(hidden=4, t_end=t_end, step_size=step))
    assert strength_grid(adapters) == pytest.approx(expected)
    unet = adapters.unet
    for s in expected[1:]:
        with adapters.at_strength(s), torch.no_grad():
            unet(torch.randn(1, 3, 16, 16), torch.tensor([3]), class_labels=torch.tensor([0]))
        states = next(iter(adapters.trajectory_states().values()))
        assert len(states) == expected.index(s) + 1  # one recorded state per grid point reached
