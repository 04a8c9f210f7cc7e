"""The LFW benchmark end to end on a tiny setup (3 people, 16x16, a few steps): slow."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
IDS = "[Colin_Powell, George_W_Bush, Tony_Blair]"
UNET = ("{block_out_channels: [16, 32], down_block_types: [DownBlock2D, AttnDownBlock2D], "
        "up_block_types: [AttnUpBlock2D, UpBlock2D], norm_num_groups: 8, attention_head_dim: 8}")


@pytest.mark.slow
def test_lfw_benchmark_tiny_end_to_end(tmp_path, faces_root, monkeypatch):
    monkeypatch.chdir(REPO)
    sys.path.insert(0, str(REPO / "benchmarks"))
    from lfw_unlearning import main

    result = main([
        "--base", str(tmp_path / "base"), "--work", str(tmp_path / "work"), "--out", str(tmp_path / "results"),
        "--root", str(faces_root), "--steps", "4", "--retain-identities", "2", "--per-identity", "2",
        "--base-per-identity", "1", "--steps-ddim", "2",
        "--pretrain-args", f"--trainer.max_steps 3 --trainer.logger.init_args.save_dir {tmp_path} "
                           f"--data.init_args.identities '{IDS}' --data.init_args.image_size 16 "
                           f"--data.init_args.batch_size 8 --model.init_args.unet '{UNET}'",
        "--unlearn-args", f"--data.init_args.identities '{IDS}' --data.init_args.image_size 16 "
                          "--model.init_args.adapter.hidden 8 --data.init_args.batch_size 4",
    ])
    saved = json.loads((tmp_path / "results" / "lfw_unlearning.json").read_text())
    assert saved["command"].startswith("python benchmarks/lfw_unlearning.py")
    for key in ("ID_forget", "ID_retain", "ID_real_forget", "acc_forget", "acc_retain", "FD_pre", "dFD_real",
                "FID_pre", "dFID_real", "face_rate"):
        assert key in saved["unlearned"], key
    assert saved["base"]["ID_forget"] == pytest.approx(1.0) and saved["base"]["FD_pre"] == pytest.approx(0, abs=1e-6)
    assert [row["strength"] for row in saved["curve"]] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert 0 < saved["trainable_params"] < saved["unet_params"]
    assert "acc_samples" in saved["base_model"]
    assert (tmp_path / "results" / "lfw_unlearning.md").read_text().count("|") > 20
    assert result["fit"]["seconds_per_step"] > 0
