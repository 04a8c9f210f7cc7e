"""Memory a stack of removal requests holds: training the next request, and sampling the deployed stack.

    python benchmarks/stack_memory.py                # ~3 min on 2 idle CPU cores

Memory does not depend on the weights, so the base is the LFW architecture of configs/pretrain_lfw.yaml with random
weights (built under --work) and each request's adapters are random (the adapter and objective of
benchmarks/configs/legato_lfw_stranger.yaml, the config of many_people.py's stacked chain). For a stack of d
requests it counts, exactly (bytes, not timings):

- ``train_saved_mb``: what autograd saves for backward in one training step of request d + 1 on top of the stack
  (batch 8 at 32x32); ``train_saved_mb_kept``: the same with the frozen requests keeping their ODE states, as before
  they integrated again in the backward pass;
- ``sampling_paths_mb``: the ODE paths the deployed stack holds after one guided step of 64 samples (128 rows);
  ``sampling_paths_mb_every_part``: the same with every request recording its path, as before only the top did.

Writes benchmarks/results/stack_memory.{json,md}.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import yaml
from scaling import make_random_base

from harness import FACES, command_line, git_commit, markdown_table, saved_bytes, write_report

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "benchmarks" / "configs" / "legato_lfw_stranger.yaml"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--depths", type=int, nargs="*", default=[0, 1, 5, 10], help="requests in the stack")
    p.add_argument("--root", default=str(FACES))
    p.add_argument("--work", default="runs/stack_memory", help="random base and the stack's artifacts")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results"), help="results directory")
    return p


def saved_mb(module, batch: dict) -> float:
    """MB autograd saves for the backward of one training step of ``module`` (:func:`harness.saved_bytes`)."""
    loss, nbytes = saved_bytes(lambda: module.total_loss(module.compute_losses(batch, noise_step=0)))
    loss.backward()
    return nbytes / 2**20


def paths_mb(methods) -> float:
    return sum(s.nbytes for m in methods for s in m.trajectory_states().values()) / 2**20


def main(argv: list[str] | None = None) -> dict:
    import legato_pl.adapters.layer as layer
    from legato_pl.data import IdentityDataModule
    from legato_pl.methods import load_method
    from legato_pl.models import UnlearningModule, load_base_model

    a = build_parser().parse_args(argv)
    work = Path(a.work)
    base = make_random_base(work / "base", 32, Path(a.root))
    options = yaml.safe_load(CONFIG.read_text())["model"]["init_args"]
    options = {k: v for k, v in options.items() if k not in ("base_model", "output_dir", "previous_adapters")}
    names = load_base_model(base).identities
    dm = IdentityDataModule(forget=names[:1], root=a.root, image_size=32, batch_size=8, hflip=False)
    dm.setup("fit")
    torch.manual_seed(0)
    batch = dm.on_after_batch_transfer(next(iter(dm.train_dataloader())), 0)
    recompute = layer.recompute_in_backward
    rows, previous = {}, None
    for depth in range(max(a.depths) + 1):
        module = UnlearningModule(str(base), **options, previous_adapters=[previous] if previous else None)
        module.bind_data(dm)
        if depth in a.depths:
            row = {"train_saved_mb": saved_mb(module, batch)}
            layer.recompute_in_backward = lambda adapter, h: False
            try:
                row["train_saved_mb_kept"] = saved_mb(module, batch)
            finally:
                layer.recompute_in_backward = recompute
            if previous:
                unet = load_base_model(base).unet.eval()
                top = load_method(unet, previous)
                parts = [*top.earlier, top]
                x, y = torch.randn(128, 3, 32, 32), torch.zeros(128, dtype=torch.long)
                with torch.no_grad():
                    unet(x, torch.tensor(500), class_labels=y)
                    row["sampling_paths_mb"] = paths_mb(parts)
                    for part in parts:
                        part.adapters.record_states = True
                    unet(x, torch.tensor(500), class_labels=y)
                    row["sampling_paths_mb_every_part"] = paths_mb(parts)
            rows[str(depth)] = row
            print(depth, {k: round(v) for k, v in row.items()}, flush=True)
        if depth == max(a.depths):
            break  # no request goes on top of the deepest stack measured
        torch.manual_seed(depth)
        for p in module.method.trainable_parameters():  # a trained request's adapters: random, not zero
            torch.nn.init.normal_(p, std=0.05)
        previous = str(work / f"request{depth + 1}")
        module.method.save(previous, forget=[names[depth + 1]])
    out = {"command": command_line("stack_memory.py", argv), "commit": git_commit(),
           "config": str(CONFIG.relative_to(REPO)), "depths": rows}
    table = markdown_table(
        ["requests in the stack", "training the next: saved for backward (MB)", "if the frozen requests kept their states",
         "sampling: ODE paths held (MB)", "if every request recorded its path"],
        [[d, f"{r['train_saved_mb']:.0f}", f"{r['train_saved_mb_kept']:.0f}",
          f"{r['sampling_paths_mb']:.0f}" if "sampling_paths_mb" in r else "-",
          f"{r['sampling_paths_mb_every_part']:.0f}" if "sampling_paths_mb_every_part" in r else "-"]
         for d, r in rows.items()])
    md = ["# Memory of a stack of removal requests", "", f"`{out['command']}` (commit {out['commit']}; random weights on "
          "the LFW architecture, the adapter and objective of the stacked chain's config; exact byte counts)", "",
          *table]
    return write_report(a.out, "stack_memory", out, md)


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
