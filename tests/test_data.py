"""Identity data: folder trees, held-out split, synthetic set, forget/retain batches, input errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from legato_pl import LegatoInputError
from legato_pl.data import (
    ForgetRetainDataset,
    IdentityDataModule,
    IdentityImages,
    scan_identity_folder,
    split_heldout,
    synthetic_identities,
)


def _tree(root: Path, people: dict[str, int], size: int = 8) -> Path:
    for i, (name, n) in enumerate(people.items()):
        (root / name).mkdir(parents=True)
        for k in range(n):
            Image.new("RGB", (size, size), (20 * i, 10 * k, 100)).save(root / name / f"{name}_{k:04d}.png")
    return root


def test_folder_tree_reads_train_and_heldout(tmp_path):
    root = _tree(tmp_path, {"alice": 10, "bob": 6})
    data = IdentityImages(str(root), 16, heldout_fraction=0.3)
    assert data.names == ["alice", "bob"]
    for name, n in {"alice": 10, "bob": 6}.items():
        assert len(data.train[name]) + len(data.heldout[name]) == n
        assert len(data.heldout[name]) >= 1
        assert data.train[name].shape[1:] == (3, 16, 16)
        assert data.train[name].min() >= -1 and data.train[name].max() <= 1


def test_heldout_split_is_deterministic_and_disjoint():
    files = [Path(f"p_{i:04d}.png") for i in range(40)]
    train, held = split_heldout(files, 0.2)
    r_train, r_held = split_heldout(list(reversed(files)), 0.2)
    assert set(held) == set(r_held) and set(train) == set(r_train)  # membership depends on the name only
    assert not set(train) & set(held) and len(train) + len(held) == 40
    assert 2 <= len(held) <= 16


def test_real_faces_load(faces_root):
    data = IdentityImages(str(faces_root), 32, 0.2, identities=["George_W_Bush", "Colin_Powell"])
    assert data.names == ["Colin_Powell", "George_W_Bush"]
    assert len(data.heldout["George_W_Bush"]) > 0


def test_synthetic_identities_are_deterministic_and_distinct():
    a, b = synthetic_identities(3, 4, 16, seed=0), synthetic_identities(3, 4, 16, seed=0)
    assert all(torch.equal(a[k], b[k]) for k in a)
    means = torch.stack([v.mean(0) for v in a.values()])
    assert torch.cdist(means.flatten(1), means.flatten(1)).fill_diagonal_(1e9).min() > 1.0


def test_forget_set_cycles_against_retain():
    forget = (torch.arange(2).float(), torch.zeros(2))
    retain = (torch.arange(5).float(), torch.ones(5))
    ds = ForgetRetainDataset(forget, retain)
    assert len(ds) == 5
    assert [ds[i][0].item() for i in range(5)] == [0, 1, 0, 1, 0]


def test_datamodule_batches_forget_and_retain():
    dm = IdentityDataModule(forget="person_01", image_size=16, batch_size=4, num_synthetic_identities=3,
                            synthetic_images_per_identity=6)
    dm.setup("fit")
    assert dm.retain == ["person_00", "person_02"]
    batch = dm.on_after_batch_transfer(next(iter(dm.train_dataloader())), 0)
    assert set(batch) == {"forget_images", "forget_labels", "retain_images", "retain_labels"}
    assert (batch["forget_labels"] == dm.class_names.index("person_01")).all()
    assert not (batch["retain_labels"] == dm.class_names.index("person_01")).any()


def test_validation_batches_are_the_heldout_photos_every_time(tmp_path):
    root = _tree(tmp_path, {"alice": 10, "bob": 10, "carol": 10})
    dm = IdentityDataModule(forget="alice", root=str(root), image_size=8, batch_size=2, heldout_fraction=0.3)
    dm.setup("fit")
    held = {n: {tuple(x.flatten().tolist()) for x in dm.data.heldout[n]} for n in dm.class_names}
    batches = [dm.on_after_batch_transfer(b, 0) for b in dm.val_dataloader()]
    again = [dm.on_after_batch_transfer(b, 0) for b in dm.val_dataloader()]
    assert batches and all(torch.equal(a[k], b[k]) for a, b in zip(batches, again) for k in a)  # no flips, fixed
    for batch in batches:
        for kind in ("forget", "retain"):
            for x, y in zip(batch[f"{kind}_images"], batch[f"{kind}_labels"]):
                name = dm.class_names[int(y)]
                assert (name == "alice") == (kind == "forget")
                assert tuple(x.flatten().tolist()) in held[name]  # a held-out photo, never a training one
    no_heldout = IdentityDataModule(forget="alice", root=str(root), image_size=8, batch_size=2, heldout_fraction=0.0)
    assert no_heldout.val_dataloader() == []  # nothing held out: Lightning skips validation


@pytest.mark.parametrize("kwargs, match", [
    ({"forget": "nobody"}, "unknown identity 'nobody'"),
    ({"forget": "person_00", "retain": ["person_01", "ghost"]}, "unknown identity 'ghost'"),
    ({"forget": "person_00", "retain": ["person_00", "person_01"]}, "both forget and retain"),
    ({"forget": "person_00", "image_size": 0}, "image_size"),
])
def test_bad_identity_arguments(kwargs, match):
    with pytest.raises(LegatoInputError, match=match):
        dm = IdentityDataModule(num_synthetic_identities=3, synthetic_images_per_identity=4, **kwargs)
        dm.setup("fit")


def test_empty_identity_folder_is_named(tmp_path):
    root = _tree(tmp_path, {"alice": 3})
    (root / "bob").mkdir()
    with pytest.raises(LegatoInputError, match="bob.*no images"):
        scan_identity_folder(root)


def test_unreadable_image_is_named(tmp_path):
    root = _tree(tmp_path, {"alice": 3, "bob": 3})
    (root / "bob" / "bob_9999.png").write_bytes(b"not an image")
    with pytest.raises(LegatoInputError, match="bob_9999.png"):
        IdentityImages(str(root), 8, 0.2)


def test_missing_root_is_refused(tmp_path):
    with pytest.raises(LegatoInputError, match="does not exist"):
        IdentityImages(str(tmp_path / "nowhere"), 8, 0.2)


def test_pretraining_without_excluded_people_keeps_their_class_but_not_their_photos():
    """The gold-standard reference: the excluded person's class exists and no batch ever holds their photos."""
    from legato_pl.data import IdentityPretrainDataModule

    dm = IdentityPretrainDataModule(image_size=8, batch_size=8, num_synthetic_identities=4,
                                    synthetic_images_per_identity=8, exclude=["person_02"])
    dm.setup()
    assert dm.class_names == ["person_00", "person_01", "person_02", "person_03"]
    _, labels = dm.train_dataloader().dataset.dataset.tensors
    assert 2 not in labels.tolist() and set(labels.tolist()) == {0, 1, 3}
    everyone = IdentityPretrainDataModule(image_size=8, batch_size=8, num_synthetic_identities=4,
                                          synthetic_images_per_identity=8)
    assert set(everyone.train_dataloader().dataset.dataset.tensors[1].tolist()) == {0, 1, 2, 3}
    with pytest.raises(LegatoInputError, match="unknown identity 'nobody' in exclude"):
        IdentityPretrainDataModule(image_size=8, num_synthetic_identities=2, exclude=["nobody"]).setup()


def test_the_test_people_are_the_committed_draw(faces_root):
    """benchmarks/people_split.json is what its rule draws (a changed rule or file fails here)."""
    import json
    import sys

    from legato_pl.data.folder import scan_identity_folder

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from harness import DEV_PEOPLE, SPLIT_FILE, draw_test_people

    split = json.loads(SPLIT_FILE.read_text())
    assert split["dev"] == DEV_PEOPLE
    assert split["test"] == draw_test_people(sorted(scan_identity_folder(faces_root)), seed=split["seed"])
    assert not set(split["test"]) & set(DEV_PEOPLE)


def test_batch_size_must_divide_over_the_processes():
    from types import SimpleNamespace

    dm = IdentityDataModule(forget="person_01", image_size=8, batch_size=4, num_synthetic_identities=3,
                            synthetic_images_per_identity=8)
    dm.trainer = SimpleNamespace(world_size=3, global_step=0, global_rank=0, accumulate_grad_batches=1)
    with pytest.raises(LegatoInputError, match="batch_size 4 is the global batch: it must divide evenly over the 3"):
        dm.setup("fit")
    dm.trainer.world_size = 2
    dm.setup("fit")


def test_a_base_models_content_fingerprint_follows_its_weights(tiny_base_dir):
    from legato_pl.models import load_base_model

    base = load_base_model(tiny_base_dir)
    same = load_base_model(tiny_base_dir).content_fingerprint()
    assert base.content_fingerprint() == same
    with torch.no_grad():
        next(base.unet.parameters()).view(-1)[0] += 1e-3
    assert base.content_fingerprint() != same
