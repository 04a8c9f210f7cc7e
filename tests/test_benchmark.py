"""The LFW benchmark scripts end to end on a tiny setup (3 people, 16x16, a few steps; slow), and their report helpers."""

from __future__ import annotations

import argparse
import inspect
import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
IDS = "[Colin_Powell, George_W_Bush, Tony_Blair]"
sys.path.insert(0, str(REPO / "benchmarks"))
UNET = ("{block_out_channels: [16, 32], down_block_types: [DownBlock2D, AttnDownBlock2D], "
        "up_block_types: [AttnUpBlock2D, UpBlock2D], norm_num_groups: 8, attention_head_dim: 8}")

TINY_PRETRAIN = (f"--data.init_args.identities '{IDS}' --data.init_args.image_size 16 "
                 f"--data.init_args.batch_size 8 --model.init_args.unet '{UNET}'")
TINY_UNLEARN = (f"--data.init_args.identities '{IDS}' --data.init_args.image_size 16 "
                "--model.init_args.method.init_args.adapter.hidden 8 --data.init_args.batch_size 4")
T2I_UNET = ("{block_out_channels: [16, 32], down_block_types: [CrossAttnDownBlock2D, DownBlock2D], "
            "up_block_types: [UpBlock2D, CrossAttnUpBlock2D], norm_num_groups: 8, attention_head_dim: 4}")
T2I_TEXT = "{hidden_size: 16, intermediate_size: 32, num_hidden_layers: 1, num_attention_heads: 2}"
TINY_T2I_PRETRAIN = (f"--trainer.max_steps 3 --data.init_args.identities '{IDS}' --data.init_args.image_size 16 "
                     f"--data.init_args.batch_size 4 --model.init_args.unet '{T2I_UNET}' "
                     f"--model.init_args.text_encoder '{T2I_TEXT}'")


@pytest.fixture(scope="module")
def tiny_lfw_base(tmp_path_factory, faces_root) -> Path:
    from harness import run_cli

    out = tmp_path_factory.mktemp("lfw")
    run_cli("configs/pretrain_lfw.yaml", ["--model.init_args.output_dir", str(out / "base"), "--data.init_args.root",
                                          str(faces_root), "--trainer.max_steps", "3",
                                          "--trainer.logger.init_args.save_dir", str(out), *shlex.split(TINY_PRETRAIN)])
    return out / "base"


def _tiny_args(base: Path, tmp_path: Path, faces_root: Path) -> list[str]:
    return ["--base", str(base), "--work", str(tmp_path / "work"), "--out", str(tmp_path / "results"), "--root",
            str(faces_root), "--steps", "3", "--retain-identities", "2", "--per-identity", "2", "--forget-samples",
            "2", "--steps-ddim", "2", "--unlearn-args", TINY_UNLEARN]


def test_a_cut_benchmark_fit_resumes_where_it_stopped(tiny_lfw_base, tmp_path, faces_root, monkeypatch):
    """A benchmark fit killed after step 15 resumes from its step-10 checkpoint when run again and writes the
    artifact of an uninterrupted fit (its stop checks before the cut included); another configuration starts afresh."""
    from safetensors.torch import load_file

    import harness

    monkeypatch.chdir(REPO)
    monkeypatch.setenv("PYTHONPATH", str(REPO / "tests"))  # the fault-injecting callback
    a = argparse.Namespace(base=str(tiny_lfw_base), root=str(faces_root), steps=20, unlearn_args=TINY_UNLEARN,
                           unlearn_config="configs/legato_lfw.yaml")
    stop = harness.with_stop(a.unlearn_config, every_n_steps=5, num_samples=2, num_retain_samples=2,
                             num_inference_steps=2)
    kill = [*stop, "--trainer.callbacks+=fault_callbacks.KillAtStep", "--trainer.callbacks.step", "15"]
    whole = harness.fit_unlearning(a, "George_W_Bush", tmp_path / "whole", stop)
    assert whole["attempts"] == 1 and whole["steps_run"] == 20 and not (tmp_path / "whole" / "ckpt").exists()
    monkeypatch.setattr(harness, "fit_key", lambda *_: "one fit")  # the cut attempt and its resumption are one fit
    with pytest.raises(subprocess.CalledProcessError):
        harness.fit_unlearning(a, "George_W_Bush", tmp_path / "cut", kill)
    assert not (tmp_path / "cut" / "weights").exists() and (tmp_path / "cut" / "ckpt" / "last.ckpt").is_file()
    resumed = harness.fit_unlearning(a, "George_W_Bush", tmp_path / "cut", stop)
    assert resumed["attempts"] == 2 and resumed["steps_run"] == 20 and resumed["seconds_per_step"] > 0
    assert not (tmp_path / "cut" / "ckpt").exists() and not (tmp_path / "cut" / "attempts.json").exists()
    w, r = (load_file(tmp_path / run / "weights" / "adapters.safetensors") for run in ("whole", "cut"))
    assert w.keys() == r.keys() and max((w[k] - r[k]).abs().max().item() for k in w) <= 1e-6
    with pytest.raises(subprocess.CalledProcessError):
        harness.fit_unlearning(a, "George_W_Bush", tmp_path / "other", kill)
    monkeypatch.setattr(harness, "fit_key", lambda *_: "another fit")
    assert harness.fit_unlearning(a, "George_W_Bush", tmp_path / "other", stop)["attempts"] == 1


@pytest.mark.slow
def test_compare_methods_tiny_end_to_end(tiny_lfw_base, tmp_path, faces_root, monkeypatch):
    monkeypatch.chdir(REPO)
    from compare_methods import main

    args = [*_tiny_args(tiny_lfw_base, tmp_path, faces_root), "--methods", "legato", "lora", "full",
            "--forget", "George_W_Bush", "Tony_Blair", "--strengths", "0.5", "1", "--resamples", "50"]
    args[args.index("--unlearn-args") + 1] += " --data.init_args.heldout_fraction 0.3"  # scored with the fit's own split
    main(args)
    saved = json.loads((tmp_path / "results" / "compare_methods.json").read_text())
    methods = saved["methods"]
    assert set(methods) == {"legato", "lora", "full", "legato_anchor", "legato_nocond"}  # ablations: first person only
    assert set(saved["per_identity"]["Tony_Blair"]["methods"]) == {"legato", "lora", "full"}
    assert methods["full"]["step_time_ratio_vs_full"] == 1.0
    assert methods["legato"]["trainable_params"] < methods["full"]["trainable_params"] == methods["full"]["unet_params"]
    assert 0 < saved["different_people_cosine"] < 1
    assert set(saved["per_identity"]) == {"George_W_Bush", "Tony_Blair"}
    for entry in saved["per_identity"].values():
        assert entry["samples"] == {"forget": 2, "retain": 4}  # 2 of the forget person, 2 of each other person
        for r in entry["methods"].values():
            assert [c["strength"] for c in r["curve"]] == [0.0, 0.5, 1.0]
            assert r["curve"][0]["FD_pre"] == pytest.approx(0, abs=1e-6)  # strength 0 is the shared base
            assert r["curve"][0]["moved_forget"] == 0.0 and r["curve"][0]["pixel_change_forget"] == 0.0
            assert 0 <= r["face_rate_forget"] <= 1 and "face_rate_forget" in r["curve"][0]
            for key in ("acc_forget", "acc_retain", "ID_forget", "FD_pre", "moved_forget", "pixel_change_retain",
                        "face_rate_forget"):
                lo, hi = r[f"{key}_ci"]
                assert lo - 1e-9 <= r[key] <= hi + 1e-9, key
            assert r["heldout_fraction"] == 0.3
    assert not list((tmp_path / "work").rglob("*.ckpt"))  # no checkpoints left: a finished fit only needs its weights
    assert (tmp_path / "results" / "compare_methods_tradeoff.png").stat().st_size > 1000
    md = (tmp_path / "results" / "compare_methods.md").read_text()
    assert "| legato_nocond |" in md.split("## One factor at a time (George_W_Bush")[1]  # the ablations' verdicts
    # a second run reuses every cached fit and evaluation
    (tmp_path / "results" / "compare_methods.json").unlink()
    main(args)
    assert json.loads((tmp_path / "results" / "compare_methods.json").read_text())["per_identity"] == saved["per_identity"]
    # --reeval scores a cached fit again (same seeds: the same numbers) without fitting it
    again = main([*args, "--reeval", "lora"])["per_identity"]["Tony_Blair"]["methods"]["lora"]
    assert again["acc_forget"] == saved["per_identity"]["Tony_Blair"]["methods"]["lora"]["acc_forget"]
    with pytest.raises(SystemExit, match="no cached fit"):
        main([*args, "--work", str(tmp_path / "empty"), "--reeval", "lora"])
    other = list(args)
    other[other.index("--unlearn-args") + 1] += " --model.init_args.eta 3"
    with pytest.raises(SystemExit, match="another configuration"):  # a cached fit is not scored for another config
        main(other)
    # a fresh work directory: --reuse lets the written results stand in for the cache (a new machine adds to
    # committed results), and stops when a result's base scores disagree with the others of its person
    fresh = [*args, "--work", str(tmp_path / "fresh"), "--report-only"]
    (tmp_path / "reuse.json").write_text(json.dumps(saved))
    assert main([*fresh, "--reuse", str(tmp_path / "reuse.json")])["per_identity"] == saved["per_identity"]
    assert not (tmp_path / "fresh").exists() or not list((tmp_path / "fresh").rglob("eval.json"))
    # a run stopped in its first new fit has already written every reused evaluation, also those planned after it
    import compare_methods

    def stopped(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(compare_methods, "fit_unlearning", stopped)
    (tmp_path / "results" / "compare_methods.json").unlink()
    with pytest.raises(KeyboardInterrupt):
        main([*args, "--work", str(tmp_path / "fresh"), "--reuse", str(tmp_path / "reuse.json"),
              "--ablations", "legato_k3", "legato_anchor", "legato_nocond"])
    assert json.loads((tmp_path / "results" / "compare_methods.json").read_text())["per_identity"] == saved["per_identity"]
    saved["per_identity"]["Tony_Blair"]["methods"]["lora"]["curve"][0]["acc_forget"] += 0.5
    (tmp_path / "reuse.json").write_text(json.dumps(saved))
    with pytest.raises(SystemExit, match="Tony_Blair: the base scores of lora"):
        main([*fresh, "--reuse", str(tmp_path / "reuse.json")])
    # the audit of the same fits (residual is fitted by the audit itself: it was not compared)
    from audit_methods import main as audit_main

    audit_args = [*_tiny_args(tiny_lfw_base, tmp_path, faces_root)[:6], "--root", str(faces_root), "--steps", "3",
                  "--steps-ddim", "2", "--unlearn-args", args[args.index("--unlearn-args") + 1],  # the compared fits' config
                  "--methods", "legato", "lora", "residual",
                  "--samples", "2", "--inversion-steps", "2", "--relearn-k", "1", "--relearn-steps", "2",
                  "--relearn-eval-every", "1"]
    audit_main(audit_args)
    audit = json.loads((tmp_path / "results" / "audit_methods.json").read_text())
    assert set(audit["methods"]) == {"legato", "lora", "residual"}
    for r in audit["methods"].values():
        assert set(r["relearning"]) == {"method k=1", "method unrelated", "reference: new person, lora k=1"}
        assert r["samples"] == 2
        assert 0 <= r["membership_inference"]["auc_after"] <= 1 and r["condition_inversion"]["steps"] == 2
        lo, hi = r["condition_inversion"]["acc_unlearned_ci"]
        assert lo <= r["condition_inversion"]["acc_unlearned"] <= hi and 0 <= lo < hi <= 1
    assert "Verdicts" in (tmp_path / "results" / "audit_methods.md").read_text()


@pytest.mark.slow
def test_many_people_tiny_end_to_end(tiny_lfw_base, tmp_path, faces_root, monkeypatch):
    monkeypatch.chdir(REPO)
    from many_people import main

    args = _tiny_args(tiny_lfw_base, tmp_path, faces_root)
    args[args.index("--unlearn-args") + 1] += " --data.init_args.heldout_fraction 0.3"
    t2i = ["--t2i-base", str(tmp_path / "t2i_base"), "--t2i-ks", "1", "2", "--t2i-unlearn-args", TINY_UNLEARN,
           "--t2i-pretrain-args", f"{TINY_T2I_PRETRAIN} --trainer.logger.init_args.save_dir {tmp_path}"]
    main([*args, "--exclude", "--methods", "legato", "full", "--ks", "1", "2", "--stacked", "1", "2", "--warm", "2",
          "--stack-cost", "2", "--erased-samples", "2", "--resamples", "20", *t2i])
    saved = json.loads((tmp_path / "results" / "many_people.json").read_text())
    people = saved["people_order"]
    assert len(people) == 2 and set(saved["one_fit"]) == {"legato", "full"}
    for ks in saved["one_fit"].values():
        assert set(ks) == {"1", "2"}
        assert ks["2"]["people"] == people and ks["1"]["people"] == people[:1]  # nested draws
        assert ks["2"]["samples"] == {"erased": 4, "kept": 2}
        assert 0 <= ks["2"]["face_rate_erased"] <= 1 and ks["2"]["trainable_params"] > 0
    # the second request of the stack was trained on top of the first, and its artifact holds it
    meta = json.loads((tmp_path / "work" / "stacked" / "request2" / "weights" / "legato_method.json").read_text())
    assert [e["forget"] for e in meta["stack"]] == [people[:1]]
    assert saved["stacked"]["2"]["people"] == people and saved["stacked"]["2"]["sampling_seconds_per_step_vs_base"] > 1
    # warm-started: the second request continued from the first and forgets both, one artifact
    warm = tmp_path / "work" / "warm" / "request2"
    assert "stack" not in json.loads((warm / "weights" / "legato_method.json").read_text())
    assert yaml.safe_load((warm / "fit" / "version_0" / "hparams.yaml").read_text())["warm_start"] == str(
        tmp_path / "work" / "warm" / "request1" / "weights")
    assert set(saved["warm"]) == {"2"} and saved["warm"]["2"]["people"] == people
    # the cost of a stack of 1..2 requests trained one step each

    assert set(saved["stack_cost"]) == {"1", "2"} and saved["stack_cost"]["2"]["people"] == people
    assert all(r["sampling_seconds_per_step_vs_base"] > 0 for r in saved["stack_cost"].values())
    cost_meta = json.loads((tmp_path / "work" / "stack_cost" / "request2" / "weights" / "legato_method.json").read_text())
    assert [e["forget"] for e in cost_meta["stack"]] == [people[:1]]
    # the text-to-image base (pretrained by the script) erases the same first names in one fit
    assert (tmp_path / "t2i_base" / "model_index.json").is_file()
    assert set(saved["t2i"]) == {"1", "2"} and saved["t2i"]["2"]["people"] == people
    assert saved["t2i"]["2"]["samples"] == {"erased": 4, "kept": 2} and saved["t2i"]["1"]["trainable_params"] > 0
    assert "Text-to-image base" in (tmp_path / "results" / "many_people.md").read_text()
    # --update remakes only the rows asked for (here one cached t2i row; no class base needed, so a missing one
    # is never loaded) and keeps the others with the command that made them
    first = saved["command"]
    rerun = [a if a != str(tiny_lfw_base) else str(tmp_path / "absent") for a in args]
    main([*rerun, "--exclude", "--update", "--ks", "--stacked", "--warm", "--erased-samples", "2", "--resamples", "20",
          *t2i[:3], "2", *t2i[5:]])
    updated = json.loads((tmp_path / "results" / "many_people.json").read_text())
    assert updated["command"] != first and updated["t2i"]["2"]["command"] == updated["command"]
    assert updated["t2i"]["1"]["command"] == first and updated["one_fit"]["full"]["2"]["command"] == first
    assert updated["stacked"]["2"]["acc_erased"] == saved["stacked"]["2"]["acc_erased"]
    assert updated["warm"]["2"]["command"] == first
    assert updated["stack_cost"]["2"]["command"] == first
    assert updated["people_order"] == people
    assert "rows of earlier runs kept by --update" in (tmp_path / "results" / "many_people.md").read_text()
    # --request-steps: a capped chain beside the uncapped one, its rows keyed apart
    main([*args, "--exclude", "--update", "--methods", "--ks", "--t2i-ks", "--stacked", "2", "--request-steps", "1",
          "--erased-samples", "2", "--resamples", "20"])
    capped = json.loads((tmp_path / "results" / "many_people.json").read_text())
    assert set(capped["stacked"]) == {"1", "2", "2_steps1"} and capped["stacked"]["2"] == updated["stacked"]["2"]
    assert capped["stacked"]["2_steps1"]["request_max_steps"] == 1 and capped["stacked"]["2_steps1"]["steps_run"] == 1
    assert (tmp_path / "work" / "stacked_steps1" / "request2" / "weights" / "legato_method.json").is_file()
    assert "(<= 1 steps a request)" in (tmp_path / "results" / "many_people.md").read_text()
    # --retain-teacher base: another capped chain whose requests hold the others to the base, keyed apart again
    main([*args, "--exclude", "--update", "--methods", "--ks", "--t2i-ks", "--stacked", "2", "--request-steps", "1",
          "--retain-teacher", "base", "--erased-samples", "2", "--resamples", "20"])
    held = json.loads((tmp_path / "results" / "many_people.json").read_text())
    assert set(held["stacked"]) == {"1", "2", "2_steps1", "2_steps1_retainbase"}
    assert held["stacked"]["2_steps1"] == capped["stacked"]["2_steps1"]
    assert held["stacked"]["2_steps1_retainbase"]["retain_teacher"] == "base"
    second = tmp_path / "work" / "stacked_steps1_retainbase" / "request2"
    assert yaml.safe_load((second / "fit" / "version_0" / "hparams.yaml").read_text())["retain_teacher"] == "base"
    assert "(others held to the base)" in (tmp_path / "results" / "many_people.md").read_text()


@pytest.mark.slow
def test_gold_standard_tiny_end_to_end(tiny_lfw_base, tmp_path, faces_root, monkeypatch):
    """A reference retrained without the person (its class kept, no photo of them), then base, reference and a
    method measured alike, with gaps to the reference."""
    monkeypatch.chdir(REPO)
    from gold_standard import main

    args = _tiny_args(tiny_lfw_base, tmp_path, faces_root)
    args[args.index("--unlearn-args") + 1] += " --data.init_args.heldout_fraction 0.3"
    main([*args, "--people", "Colin_Powell", "--methods", "legato", "--fit-only"])  # fits, measures nothing
    fit = json.loads((tmp_path / "work" / "Colin_Powell" / "legato" / "fit.json").read_text())
    assert not (tmp_path / "results").exists() and not (tmp_path / "reference").exists()
    measure = [*args, "--reference", str(tmp_path / "reference"), "--pretrain-args",
               TINY_PRETRAIN + " --trainer.max_steps 3", "--people", "Colin_Powell", "--methods", "legato",
               "--samples", "2", "--inversion-steps", "2", "--relearn-k", "1", "--relearn-steps", "2",
               "--relearn-eval-every", "1", "--resamples", "20"]
    main(measure)
    saved = json.loads((tmp_path / "results" / "gold_standard.json").read_text())
    # a cache relearned before the attacker's LoRA was seeded is relearned again, to the same (seeded) curve
    cache = tmp_path / "work" / "Colin_Powell" / "legato" / "measured" / "measure.pt"
    old = torch.load(cache)
    torch.save({**{k: v for k, v in old.items() if k != "relearn_seeded"}, "relearn_curves": {}}, cache)
    main(measure)
    assert torch.load(cache)["relearn_curves"] == old["relearn_curves"] and torch.load(cache)["relearn_seeded"]
    assert saved["reference"]["excluded"] == ["Colin_Powell"]
    assert json.loads((tmp_path / "reference" / "identities.json").read_text()) == json.loads(
        (tiny_lfw_base / "identities.json").read_text())  # the class stays; its photos were never seen
    entry = saved["per_identity"]["Colin_Powell"]
    for row in (entry["base"], entry["reference"], entry["methods"]["legato"]):
        for key in ("acc_own", "face_rate", "moved", "inversion_acc", "mia_auc", "acc_retain"):
            lo, hi = row[f"{key}_ci"]
            assert 0 <= row[key] <= 1 and lo <= hi, (key, row)
        assert set(row["relearn_steps"]) == {"1"}
        curve = row["relearn_curves"]["1"]  # the checks behind the step count: it is the first at the target
        reached = [step for step, acc in curve if acc >= row["relearn_curves"]["target"]]
        assert row["relearn_steps"]["1"] == (reached[0] if reached else None) and curve[0][0] == 0
    assert entry["base"]["moved"] == 0  # the base against itself
    assert entry["methods"]["legato"]["fit_seconds"] == fit["wall_time_s"]  # the --fit-only run's fit, reused
    value, lo, hi = entry["methods"]["legato"]["gap"]["acc_own"]
    assert lo <= value <= hi or lo == hi


@pytest.mark.slow
def test_lfw_benchmark_tiny_end_to_end(tmp_path, faces_root, monkeypatch):
    monkeypatch.chdir(REPO)
    from lfw_unlearning import main

    result = main([
        "--base", str(tmp_path / "base"), "--work", str(tmp_path / "work"), "--out", str(tmp_path / "results"),
        "--root", str(faces_root), "--steps", "4", "--retain-identities", "2", "--per-identity", "2",
        "--base-per-identity", "1", "--steps-ddim", "2",
        "--pretrain-args", f"--trainer.max_steps 3 --trainer.logger.init_args.save_dir {tmp_path} {TINY_PRETRAIN}",
        "--unlearn-args", TINY_UNLEARN,
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


def test_sd_scale_cost_runs_every_variant_on_a_small_config(tmp_path, monkeypatch):
    """The SD-1.5 cost script end to end on a tiny UNet2DConditionModel (same code path, seconds)."""
    monkeypatch.chdir(REPO)
    from sd_scale_cost import main

    config = {"sample_size": 8, "in_channels": 4, "out_channels": 4, "layers_per_block": 1,
              "block_out_channels": [16, 32], "cross_attention_dim": 8, "attention_head_dim": 4,
              "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
              "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"], "norm_num_groups": 8}
    out = main(["--unet-config", json.dumps(config), "--steps", "1", "--warmup", "0", "--out", str(tmp_path),
                "--variants", "full", "lora", "legato", "legato_ckpt", "legato_bf16_base"])
    methods = out["methods"]
    assert set(out["methods_bf16_base"]) == {"legato"} and "error" not in out["methods_bf16_base"]["legato"]
    assert all("error" not in r for r in methods.values()), methods
    assert methods["full"]["ratio_time_vs_full"] == 1.0 and methods["full"]["trainable_params"] == out["unet_params"]
    assert 0 < methods["legato"]["trainable_params"] < methods["full"]["trainable_params"]
    assert json.loads((tmp_path / "sd_scale_cost.json").read_text())["methods"].keys() == methods.keys()
    # --update reruns only the given variants and keeps the others (e.g. full alone, with more memory)
    again = main(["--unet-config", json.dumps(config), "--steps", "1", "--warmup", "0", "--out", str(tmp_path),
                  "--variants", "legato_adjoint", "--update"])
    assert set(again["methods_bf16_base"]) == {"legato"}  # kept by --update
    assert set(again["methods"]) == {*methods, "legato_adjoint"} and "--update" in again["command"]
    assert again["methods"]["legato_adjoint"]["command"] == again["command"]
    assert again["methods"]["legato"]["command"] != again["command"]  # the first run's variants keep their command
    assert again["methods"]["legato_adjoint"]["ratio_time_vs_full"] > 0
    # the SDXL row: a tiny text_time UNet (two-encoder text states, pooled embedding, size ids) through the same step
    sdxl = {**config, "cross_attention_dim": 12, "addition_embed_type": "text_time", "addition_time_embed_dim": 4,
            "projection_class_embeddings_input_dim": 6 * 4 + 12}
    xl = main(["--unet-config", json.dumps(config), "--sdxl-config", json.dumps(sdxl), "--steps", "1", "--warmup", "0",
               "--out", str(tmp_path), "--variants", "legato_sdxl", "--update", "--sdxl-bf16-base",
               "--sdxl-checkpointing"])
    assert "error" not in xl["sdxl"], xl["sdxl"]
    assert xl["sdxl"]["base_dtype"] == "bf16" and xl["sdxl"]["checkpointing"]  # the memory savers, recorded
    assert xl["sdxl_seconds_per_step"] > 0 and xl["sdxl_peak_rss_mb"] > 0 and xl["sdxl_latent_size"] == 8
    assert xl["sdxl_unet_params"] != xl["unet_params"] and "legato_sdxl" not in xl["methods"]
    assert set(xl["methods"]) == set(again["methods"])  # kept by --update
    assert "SDXL-sized UNet" in (md := (tmp_path / "sd_scale_cost.md").read_text()) and "frozen UNet in bf16" in md


def test_step_profile_splits_a_step_and_measures_its_floor(tmp_path, faces_root, monkeypatch):
    """benchmarks/step_profile.py on a tiny SD-layout UNet: every part timed, the floor below the step."""
    monkeypatch.chdir(REPO)
    from step_profile import PARTS, main

    config = {"layers_per_block": 1, "block_out_channels": [16, 32], "attention_head_dim": 4, "norm_num_groups": 8,
              "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
              "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"]}
    out = main(["--models", "sd15", "--methods", "legato", "--steps", "1", "1", "--warmup", "1",
                "--unet-config", json.dumps(config), "--root", str(faces_root), "--out", str(tmp_path)])
    runs = {r["method"]: r for r in out["runs"]}
    assert all("error" not in r for r in runs.values()), runs
    for r in runs.values():
        s = r["seconds"]
        assert all(s.get(k, 0.0) >= 0 for k in PARTS) and 0 < s["floor"] and r["ratio_step_vs_floor"] > 0
        assert s["teacher_forward"] + s["student_forward"] + s["backward"] <= s["step"]
        assert r["rows_per_step"] == {"teacher": 5, "student": 4}  # batch 1: forget, retain x2, negative, adjacency
    assert 0 < runs["legato"]["seconds"]["ode_solve"] < runs["legato"]["seconds"]["student_forward"]
    assert 0 < runs["legato"]["trainable_params"] < runs["legato"]["unet_params"]
    assert "step / floor" in (tmp_path / "step_profile.md").read_text()
    assert json.loads((tmp_path / "step_profile.json").read_text())["commit"]


@pytest.mark.slow
def test_t2i_benchmark_tiny_end_to_end(tmp_path, faces_root, monkeypatch):
    """benchmarks/t2i_lfw.py on a tiny text-to-image base of three LFW people (pretrained 3 steps by the script)."""
    monkeypatch.chdir(REPO)
    from t2i_lfw import main

    pretrain = f"{TINY_T2I_PRETRAIN} --trainer.logger.init_args.save_dir {tmp_path}"
    main(["--base", str(tmp_path / "base"), "--work", str(tmp_path / "work"), "--out", str(tmp_path / "results"),
          "--root", str(faces_root), "--steps", "3", "--per-identity", "2", "--forget-samples", "3", "--steps-ddim", "2",
          "--resamples", "20", "--pretrain-args", pretrain, "--unlearn-args", TINY_UNLEARN])
    saved = json.loads((tmp_path / "results" / "t2i_lfw.json").read_text())
    assert saved["forget"] == "George_W_Bush" and saved["command"].startswith("python benchmarks/t2i_lfw.py")
    assert saved["samples"] == {"base_acc": 6, "forget": 3, "forget_paraphrase": 3, "retain": 4, "people": 3}
    for key in ("base_acc", "acc_forget", "acc_forget_paraphrase", "acc_retain", "face_rate_forget",
                "face_rate_forget_before", "face_rate_forget_paraphrase", "face_rate_forget_paraphrase_before"):
        lo, hi = saved[f"{key}_ci"]
        assert 0 <= saved[key] <= 1 and lo - 1e-9 <= saved[key] <= hi + 1e-9, key
    assert 0 <= saved["acc_forget_before"] <= 1 and 0 <= saved["acc_retain_before"] <= 1
    assert not set(saved["templates"]) & set(saved["paraphrases"])
    assert saved["FD_pre"] >= 0 and 0 < saved["trainable_params"] < saved["unet_params"]
    assert (tmp_path / "results" / "t2i_lfw_grid.png").stat().st_size > 500
    assert "paraphrases never trained on" in (tmp_path / "results" / "t2i_lfw.md").read_text()
    # the cached fit belongs to this configuration: another one (here: an extra override) is refused, not scored
    with pytest.raises(SystemExit, match="another configuration"):
        main(["--base", str(tmp_path / "base"), "--work", str(tmp_path / "work"), "--out", str(tmp_path / "results"),
              "--root", str(faces_root), "--steps", "3", "--unlearn-args", TINY_UNLEARN + " --model.init_args.eta 2"])
    # and to this base: a retrained base (here: its UNet file rewritten) is refused, not scored
    weights = next((tmp_path / "base" / "unet").glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes())
    with pytest.raises(SystemExit, match="another version"):
        main(["--base", str(tmp_path / "base"), "--work", str(tmp_path / "work"), "--out", str(tmp_path / "results"),
              "--root", str(faces_root), "--steps", "3"])


def test_cached_fit_of_another_base_or_configuration_is_refused(tmp_path, capsys):
    import argparse

    from compare_methods import verify_cached

    from harness import base_fingerprint, fit_key

    (tmp_path / "base" / "unet").mkdir(parents=True)
    (tmp_path / "base" / "unet" / "w.safetensors").write_bytes(b"0")
    a = argparse.Namespace(base=str(tmp_path / "base"), unlearn_config=str(REPO / "configs/legato_lfw.yaml"),
                           unlearn_args="", steps=300)
    fit = {"base_fingerprint": base_fingerprint(a.base), "fit_key": fit_key(a, "Tony_Blair", [])}
    verify_cached(fit, a, "Tony_Blair", "legato", tmp_path)  # the same: accepted
    with pytest.raises(SystemExit, match="another configuration"):
        verify_cached(fit, a, "Tony_Blair", "legato_eta2", tmp_path)
    with pytest.raises(SystemExit, match="another configuration"):
        verify_cached(fit, a, "George_W_Bush", "legato", tmp_path)
    with pytest.raises(SystemExit, match="another version"):
        verify_cached({**fit, "base_fingerprint": "retrained"}, a, "Tony_Blair", "legato", tmp_path)
    verify_cached({"base_fingerprint": fit["base_fingerprint"]}, a, "Tony_Blair", "legato", tmp_path)
    assert "not verified" in capsys.readouterr().out  # an old fit without its key: accepted, and said


def test_ablation_verdict_is_a_tie_when_intervals_overlap():
    from compare_methods import ablation_table, versus

    ref = {"acc_forget": 0.1, "acc_forget_ci": [0.05, 0.15]}
    assert versus(ref, {"acc_forget": 0.12, "acc_forget_ci": [0.14, 0.2]}, "acc_forget", True) == "tie"
    assert versus(ref, {"acc_forget": 0.0, "acc_forget_ci": [0.0, 0.04]}, "acc_forget", True) == "better"
    assert versus(ref, {"acc_forget": 0.0, "acc_forget_ci": [0.0, 0.04]}, "acc_forget", False) == "worse"
    assert versus(ref, {"acc_forget": 0.3, "acc_forget_ci": [0.2, 0.4]}, "acc_forget", True) == "worse"
    assert versus(ref, {"acc_forget": 0.3}, "acc_forget", True) == "?"  # a withdrawn interval judges nothing
    assert ablation_table({"lora": {}}, "x") == []  # no default legato: nothing to compare with
    row = {**{k: 0.5 for k in ("acc_forget", "acc_retain", "moved_forget", "pixel_change_retain", "FD_pre")},
           **{f"{k}_ci": [0.4, 0.6] for k in ("acc_forget", "acc_retain", "moved_forget", "pixel_change_retain")},
           "FD_pre_ci": [0.4, 0.6], "trainable_params": 10}
    moved_more = {**row, "moved_forget": 0.9, "moved_forget_ci": [0.8, 1.0]}
    md = "\n".join(ablation_table({"legato": moved_more, "legato_eta1": row, "legato_k3": row, "lora": row}, "x"))
    assert "| legato_eta1 (reference) |" in md  # the ablations' own reference when it was run, not the default
    assert md.count(" better |") == 1 and "| legato |" in md and "| legato_k3 |" in md and "| lora |" not in md
    assert "legato (reference)" in "\n".join(ablation_table({"legato": row, "legato_k3": row}, "x"))


def test_gold_standard_never_measures_the_seeds_a_fit_was_stopped_on():
    """StopWhenForgotten keeps the state whose fixed-seed samples look most forgotten: measuring those samples again
    would report the selection, not the model. The gold standard's seeds avoid the stop checks' (as configured)."""
    from gold_standard import MEASURE_SEED, build_parser

    from legato_pl.callbacks import StopWhenForgotten

    config = yaml.safe_load((REPO / "configs" / "legato_lfw.yaml").read_text())
    stop = next(c["init_args"] for c in config["trainer"]["callbacks"] if c["class_path"].endswith("StopWhenForgotten"))
    first = stop.get("seed", inspect.signature(StopWhenForgotten).parameters["seed"].default)
    checked = set(range(first, first + stop["num_samples"] + stop["num_retain_samples"]))
    samples = build_parser().parse_args([]).samples
    assert checked and not checked & set(range(MEASURE_SEED, MEASURE_SEED + samples))


def test_with_stop_changes_only_the_named_arguments_of_the_configs_stop():
    """A benchmark variant's stop is the config's, with the named arguments changed, and the callback accepts it."""
    from legato_pl.callbacks import StopWhenForgotten

    from harness import fit_callbacks, with_stop

    config = REPO / "configs" / "legato_lfw.yaml"
    flag, value = with_stop(config, min_face_rate=0.8, rank_by="face_rate")
    (changed,), (original,) = json.loads(value), json.loads(fit_callbacks(str(config)))
    assert flag == "--trainer.callbacks" and changed["class_path"] == original["class_path"]
    assert changed["init_args"] == {**original["init_args"], "min_face_rate": 0.8, "rank_by": "face_rate"}
    assert StopWhenForgotten(**changed["init_args"]).rank_by == "face_rate"
    with pytest.raises(ValueError, match="no stopping callback"):
        with_stop(REPO / "configs" / "pretrain_lfw.yaml", rank_by="face_rate")


def test_many_people_stop_per_person_reaches_legato_fits_but_not_the_baselines():
    """--stop-per-person N gives the config's stop min_samples_per_person N in the fits that keep it, leaves a method
    that sets its own callbacks (a baseline's "no stop", a variant's stop) as it is, and caches those fits apart;
    0 changes nothing."""
    from compare_methods import METHODS
    from many_people import build_parser, stop_overrides, stop_tag

    a = build_parser().parse_args(["--stop-per-person", "16"])
    (flag, value, *rest), n = stop_overrides(a, ["--x", "1"])
    (stop,) = json.loads(value)
    assert flag == "--trainer.callbacks" and stop["init_args"]["min_samples_per_person"] == 16 and n == 16
    assert rest == ["--x", "1"] and stop_tag(n) == "_stop16"
    for own in ("lora", "legato_faces"):
        assert stop_overrides(a, METHODS[own]) == (METHODS[own], 0)
    assert stop_overrides(build_parser().parse_args([]), ["--x", "1"]) == (["--x", "1"], 0) and stop_tag(0) == ""


def test_many_people_request_steps_caps_the_requests_and_keys_their_rows_apart(tmp_path):
    """--request-steps N fits stacked and warm requests for N steps, caches them apart and keys their rows k_stepsN,
    so --update replaces only the capped rows and keeps the uncapped ones."""
    from many_people import build_parser, capped_requests, kept_rows

    a = build_parser().parse_args(["--out", str(tmp_path), "--request-steps", "50", "--stacked", "5", "--warm", "5"])
    request_args, cap = capped_requests(a)
    assert (request_args.steps, a.steps, cap) == (50, 300, "_steps50")
    uncapped = build_parser().parse_args([])
    assert capped_requests(uncapped) == (uncapped, "")
    rows = {"5": {"acc_erased": 0.0}, "5_steps50": {"acc_erased": 0.5}}
    (tmp_path / "many_people.json").write_text(json.dumps({"command": "old", "stacked": rows, "warm": rows}))
    kept = kept_rows(a, {"one_fit": {}})
    assert set(kept["stacked"]) == set(kept["warm"]) == {"5"}


def test_field_reach_reads_zero_for_an_untrained_artifact_and_more_for_a_trained_one(tiny_lfw_base, tmp_path,
                                                                                      faces_root, monkeypatch):
    """benchmarks/field_reach.py: an artifact at its init (the identity) acts nowhere; a moved one acts."""
    monkeypatch.chdir(REPO)
    from field_reach import main

    from legato_pl.methods import Legato
    from legato_pl.models import load_base_model

    for name, scale in (("init", 0.0), ("moved", 0.5)):
        unet = load_base_model(tiny_lfw_base).unet
        method = Legato(unet, adapter={"hidden": 8})
        with torch.no_grad():
            for p in method.trainable_parameters():
                p.add_(scale * torch.randn(p.shape, generator=torch.Generator().manual_seed(0)))
        method.save(tmp_path / name, base_model=str(tiny_lfw_base))
    out = main(["--base", str(tiny_lfw_base), "--root", str(faces_root), "--forget", "George_W_Bush", "--other",
                "Tony_Blair", "--artifacts", f"init={tmp_path / 'init'}", f"moved={tmp_path / 'moved'}",
                "--inversion-steps", "2", "--batches", "1", "--out", str(tmp_path / "results")])
    init, moved = (out["artifacts"][n]["conditions"] for n in ("init", "moved"))
    assert len(init) == 5 and init["own"]["distance_from_own"] == 0
    assert all(c["action"] == 0 and c["loss_base"] == c["loss_unlearned"] for c in init.values())
    assert all(c["action"] > 0 for c in moved.values())
    for key in ("loss_base", "distance_from_own"):  # one base, one inversion on it, whatever the artifact
        assert init["inverted on the base"][key] == moved["inverted on the base"][key]
    assert (tmp_path / "results" / "field_reach.md").is_file()


def test_git_commit_is_the_code_a_run_loaded_not_a_later_commit(monkeypatch):
    """A benchmark scores for an hour; a commit made meanwhile must not relabel its rows."""
    import harness

    heads = iter(["a" * 40, "", "b" * 40, ""])  # rev-parse HEAD, then status --porcelain, at each read
    monkeypatch.setattr(harness.subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 0, next(heads), ""))
    harness.git_commit.cache_clear()
    try:
        assert harness.git_commit() == "a" * 40
        assert harness.git_commit() == "a" * 40  # HEAD moved to b...: still the code this process loaded
    finally:
        harness.git_commit.cache_clear()


def test_stack_memory_counts_what_a_stack_holds(tmp_path):
    """Training on a stack saves about what training on the base does; frozen requests keeping their states would
    add to it, and a deployed stack holds only its top request's path."""
    import stack_memory

    out = stack_memory.main(["--depths", "0", "2", "--work", str(tmp_path / "work"), "--out", str(tmp_path)])
    bare, stack = out["depths"]["0"], out["depths"]["2"]
    assert bare["train_saved_mb"] == bare["train_saved_mb_kept"]  # nothing frozen to recompute
    assert stack["train_saved_mb"] < 1.1 * bare["train_saved_mb"] < stack["train_saved_mb_kept"]
    assert stack["sampling_paths_mb_every_part"] == pytest.approx(2 * stack["sampling_paths_mb"])
    assert (tmp_path / "stack_memory.md").is_file()
