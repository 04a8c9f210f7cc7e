"""Metrics: known answers on hand-built inputs, DDP-style state reduction, and the pretrained models on real photos."""

from __future__ import annotations

import math
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn.functional as F
from PIL import Image

from legato_pl.errors import LegatoInputError
from legato_pl.metrics import (
    FID,
    CentroidAccuracy,
    CentroidSimilarity,
    FacenetEncoder,
    FaceRate,
    FrechetDistance,
    InceptionFeatures,
    PairedCosineSimilarity,
    UnlearningMetrics,
    class_centroids,
    feature_statistics,
    frechet_distance,
    load_encoder,
)

FACES_DIR = Path(__file__).parents[1] / ".." / "shared" / "data" / "faces"
PEOPLE = ["Alejandro_Toledo", "Colin_Powell", "Hugo_Chavez", "Serena_Williams", "Tony_Blair"]


@pytest.fixture(scope="module")
def faces_dir() -> Path:
    if not FACES_DIR.is_dir():
        pytest.fail(f"real face photos are missing: expected folder-per-person PNGs at {FACES_DIR.resolve()}")
    return FACES_DIR


def load_person(faces: Path, name: str, count: int, size: int) -> torch.Tensor:
    """The first ``count`` photos of ``name`` as ``[count, 3, size, size]`` in [-1, 1] (PIL bicubic resize)."""
    files = sorted((faces / name).glob("*.png"))[:count]
    assert len(files) == count, f"{faces / name} has fewer than {count} photos"
    arrays = []
    for path in files:
        with Image.open(path) as img:
            arrays.append(np.asarray(img.convert("RGB").resize((size, size), Image.Resampling.BICUBIC), np.float32))
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2) / 127.5 - 1.0


def fake_sync(metric, other) -> None:
    """Make ``metric.compute()`` reduce its states with ``other``'s, as a 2-rank DDP all-gather would."""
    def gather(tensor, group=None):
        peer = {id(getattr(metric, name)): getattr(other, name) for name in metric._defaults}
        return [tensor, peer[id(tensor)]]

    metric.dist_sync_fn = gather
    metric.distributed_available_fn = lambda: True


class FlatEncoder:
    """Known-answer identity encoder: the flattened image, L2-normalised."""

    name = "flat"

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(images.flatten(1).float(), dim=1)


# --- identity metrics ------------------------------------------------------------------------------


def test_paired_cosine_known_answers():
    eye = torch.eye(4)
    metric = PairedCosineSimilarity()
    metric.update(eye, eye)
    assert metric.compute().item() == pytest.approx(1.0, abs=1e-6)
    metric.reset()
    metric.update(eye, eye.roll(1, dims=0))  # every pair orthogonal
    assert metric.compute().item() == pytest.approx(0.0, abs=1e-6)
    metric.update(eye, -eye)  # accumulates: mean of 4 zeros and 4 minus ones
    assert metric.compute().item() == pytest.approx(-0.5, abs=1e-6)
    with pytest.warns(UserWarning, match="before the ``update``"):
        assert math.isnan(PairedCosineSimilarity().compute().item())
    with pytest.raises(LegatoInputError):
        metric.update(eye, eye[:3])


def test_centroid_metrics_known_answers():
    centroids = torch.eye(3, 5) * 2.0  # normalised inside
    labels = torch.arange(3)
    acc, sim = CentroidAccuracy(centroids), CentroidSimilarity(centroids)
    acc.update(centroids, labels)
    sim.update(centroids, labels)
    assert acc.compute().item() == 1.0
    assert sim.compute().item() == pytest.approx(1.0, abs=1e-6)
    swapped = labels.roll(1)  # every row labelled as another identity
    acc.reset(), sim.reset()
    acc.update(centroids, swapped)
    sim.update(centroids, swapped)
    assert acc.compute().item() == 0.0
    assert sim.compute().item() == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(LegatoInputError):
        acc.update(centroids, torch.tensor([0, 1, 3]))  # label out of range


def test_class_centroids_is_normalised_class_mean():
    emb = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 3.0], [0.0, 1.0]])
    got = class_centroids(emb, torch.tensor([0, 0, 1, 1]), 2)
    expected = torch.tensor([[0.5**0.5, 0.5**0.5], [0.0, 1.0]])
    torch.testing.assert_close(got, expected)
    with pytest.raises(LegatoInputError):
        class_centroids(emb, torch.tensor([0, 0, 0, 0]), 2)  # class 1 has no rows


# --- Fréchet distance ------------------------------------------------------------------------------


def test_frechet_distance_closed_forms():
    g = torch.Generator().manual_seed(0)
    mu1, mu2 = torch.randn(6, generator=g, dtype=torch.float64), torch.randn(6, generator=g, dtype=torch.float64)
    a, b = torch.rand(6, generator=g, dtype=torch.float64) + 0.1, torch.rand(6, generator=g, dtype=torch.float64) + 0.1
    # commuting (diagonal) covariances: ||mu1-mu2||^2 + sum (sqrt a - sqrt b)^2
    expected = (mu1 - mu2).square().sum() + (a.sqrt() - b.sqrt()).square().sum()
    assert frechet_distance(mu1, torch.diag(a), mu2, torch.diag(b)) == pytest.approx(expected.item(), rel=1e-9)
    # general SPD covariances against scipy's matrix square root
    x, y = torch.randn(6, 6, generator=g, dtype=torch.float64), torch.randn(6, 6, generator=g, dtype=torch.float64)
    s1, s2 = x @ x.T + 0.1 * torch.eye(6), y @ y.T
    covmean = scipy.linalg.sqrtm(s1.numpy() @ s2.numpy()).real
    reference = (mu1 - mu2).square().sum().item() + float(np.trace(s1.numpy() + s2.numpy() - 2 * covmean))
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(reference, rel=1e-6)
    assert frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0.0, abs=1e-9 * s1.trace().item())


def test_frechet_metric_identical_shifted_and_rank_deficient():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(200, 8, generator=g) * torch.linspace(0.1, 3.0, 8)
    metric = FrechetDistance(8)
    metric.update(x, real=True)
    metric.update(x, real=False)
    scale = torch.cov(x.T.double()).trace().item()
    assert metric.compute().item() <= 1e-6 * scale
    shift = torch.tensor([1.0, -2.0, 0.5, 0.0, 0.0, 3.0, 0.0, 1.0])
    metric.reset()
    metric.update(x, real=True)
    metric.update(x + shift, real=False)  # same covariance, shifted mean
    assert metric.compute().item() == pytest.approx(shift.square().sum().item(), rel=1e-6)
    # fewer samples than dimensions (singular covariances, as with FID on small sets)
    few = torch.randn(10, 64, generator=g)
    metric = FrechetDistance(64)
    metric.update(few, real=True)
    metric.update(few, real=False)
    assert metric.compute().item() <= 1e-6 * torch.cov(few.T.double()).trace().item()
    # too few samples to fit a Gaussian
    lonely = FrechetDistance(64)
    lonely.update(few[:1], real=True)
    lonely.update(few, real=False)
    assert math.isnan(lonely.compute().item())


def test_frechet_metric_with_fixed_reference():
    g = torch.Generator().manual_seed(2)
    real, fake = torch.randn(50, 4, generator=g), torch.randn(40, 4, generator=g) + 0.5
    plain = FrechetDistance(4)
    plain.update(real, real=True)
    plain.update(fake, real=False)
    fixed = FrechetDistance(4, reference=feature_statistics(real))
    fixed.update(fake, real=False)
    assert fixed.compute().item() == pytest.approx(plain.compute().item(), rel=1e-9)
    with pytest.raises(LegatoInputError):
        fixed.update(real, real=True)


def test_states_reduce_like_one_metric():
    g = torch.Generator().manual_seed(3)
    real, fake = torch.randn(30, 5, generator=g), torch.randn(24, 5, generator=g) * 2 + 1
    centroids = torch.randn(4, 5, generator=g)
    emb, labels = torch.randn(40, 5, generator=g), torch.randint(0, 4, (40,), generator=g)

    def fd(real_part, fake_part):
        metric = FrechetDistance(5)
        metric.update(real_part, real=True)
        metric.update(fake_part, real=False)
        return metric

    def acc(rows):
        metric = CentroidAccuracy(centroids)
        metric.update(emb[rows], labels[rows])
        return metric

    whole_fd, whole_acc = fd(real, fake).compute().item(), acc(slice(None)).compute().item()
    assert 0 < whole_acc < 1  # a non-trivial split
    # merge_state (sum reduction of the states)
    merged = fd(real[:10], fake[:20])
    merged.merge_state(fd(real[10:], fake[20:]))
    assert merged.compute().item() == pytest.approx(whole_fd, rel=1e-9)
    merged_acc = acc(slice(0, 13))
    merged_acc.merge_state(acc(slice(13, None)))
    assert merged_acc.compute().item() == pytest.approx(whole_acc, abs=1e-12)
    # the DDP path: compute() all-gathers the states of two "ranks" and applies dist_reduce_fx
    rank0, rank1 = fd(real[:17], fake[:5]), fd(real[17:], fake[5:])
    fake_sync(rank0, rank1)
    assert rank0.compute().item() == pytest.approx(whole_fd, rel=1e-9)
    rank0_acc, rank1_acc = acc(slice(0, 7)), acc(slice(7, None))
    fake_sync(rank0_acc, rank1_acc)
    assert rank0_acc.compute().item() == pytest.approx(whole_acc, abs=1e-12)
    # halves differ from the whole, so the checks above can fail
    assert fd(real[:17], fake[:5]).compute().item() != pytest.approx(whole_fd, rel=1e-3)


# --- pretrained models on real photos --------------------------------------------------------------


def test_dlib_identifies_real_photos_at_32px(faces_dir):
    encoder = load_encoder("dlib")
    assert load_encoder("dlib") is encoder  # cached per process
    train, test, train_labels, test_labels = [], [], [], []
    for label, name in enumerate(PEOPLE):
        photos = load_person(faces_dir, name, 8, 32)
        train.append(photos[::2])
        test.append(photos[1::2])
        train_labels += [label] * 4
        test_labels += [label] * 4
    train_emb, test_emb = encoder(torch.cat(train)), encoder(torch.cat(test))
    assert train_emb.shape == (20, 128) and train_emb.dtype == torch.float32
    torch.testing.assert_close(train_emb.norm(dim=1), torch.ones(20))
    accuracy = CentroidAccuracy(class_centroids(train_emb, torch.tensor(train_labels), len(PEOPLE)))
    accuracy.update(test_emb, torch.tensor(test_labels))
    assert accuracy.compute().item() >= 0.8


def test_load_encoder_rejects_unknown_name():
    with pytest.raises(ValueError, match="dlib.*facenet"):
        load_encoder("arcface")


def test_face_rate_real_photos_vs_noise_and_grey(faces_dir):
    for size in (32, 64):
        photos = torch.cat([load_person(faces_dir, name, 2, size) for name in PEOPLE[:3]])
        rate = FaceRate()
        rate.update(photos)
        assert rate.compute().item() >= 5 / 6, f"faces found in too few real photos at {size}px"
        rate = FaceRate()
        rate.update(torch.rand(4, 3, size, size, generator=torch.Generator().manual_seed(size)) * 2 - 1)
        rate.update(torch.zeros(2, 3, size, size))
        assert rate.compute().item() <= 1 / 6, f"faces found in noise / grey images at {size}px"


def test_inception_features_and_fid(faces_dir):
    faces = torch.cat([load_person(faces_dir, name, 1, 32) for name in PEOPLE[:2]])
    noise = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    net = InceptionFeatures()
    feats = net(torch.cat([faces, noise]))
    assert feats.shape == (4, 2048) and feats.dtype == torch.float32 and net.num_features == 2048
    # eval-mode network: a row does not depend on the rest of the batch
    torch.testing.assert_close(net(faces[:1]), feats[:1], rtol=1e-4, atol=1e-4)
    fd = FrechetDistance(2048)
    fd.update(feats[:2], real=True)
    fd.update(feats[:2], real=False)
    same = fd.compute().item()
    fd.reset()
    fd.update(feats[:2], real=True)
    fd.update(feats[2:], real=False)
    different = fd.compute().item()
    assert same <= 1e-6 * different and different > 10.0
    # the FID metric is the Fréchet distance of these features
    fid = FID()
    fid.update(faces, real=True)
    fid.update(noise, real=False)
    assert fid.compute().item() == pytest.approx(different, rel=1e-3)


# --- FaceNet weights ------------------------------------------------------------------------------


def test_facenet_without_weights_offline_explains_how_to_supply_them(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.delenv("LEGATO_FACENET_WEIGHTS", raising=False)
    with pytest.raises(LegatoInputError) as err:
        FacenetEncoder()
    message = str(err.value)
    assert "LEGATO_FACENET_WEIGHTS" in message and "weights_path" in message
    assert "20180402-114759-vggface2.pt" in message
    monkeypatch.setenv("LEGATO_FACENET_WEIGHTS", str(tmp_path / "missing.pt"))
    with pytest.raises(LegatoInputError, match="missing.pt"):
        FacenetEncoder()


def test_facenet_loads_local_weights_file(monkeypatch, tmp_path):
    from facenet_pytorch import InceptionResnetV1

    torch.manual_seed(0)
    state = InceptionResnetV1(pretrained=None, classify=False).state_dict()
    state["logits.weight"], state["logits.bias"] = torch.zeros(3, 512), torch.zeros(3)  # as in the vggface2 file
    path = tmp_path / "vggface2.pt"
    torch.save(state, path)
    monkeypatch.delenv("LEGATO_FACENET_WEIGHTS", raising=False)
    encoder = FacenetEncoder(weights_path=str(path))
    emb = encoder(torch.rand(2, 3, 32, 32) * 2 - 1)
    assert emb.shape == (2, 512)
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(2))
    torch.testing.assert_close(encoder.net.conv2d_1a.conv.weight, state["conv2d_1a.conv.weight"])


# --- the suite ------------------------------------------------------------------------------------


def _suite_data(size: int = 8, per_class: int = 4, seed: int = 0):
    """Three identities with random +-1 prototypes; real photos and samples are noisy prototypes."""
    g = torch.Generator().manual_seed(seed)
    protos = torch.randint(0, 2, (3, 3, size, size), generator=g).float() * 2 - 1
    real = {k: (protos[k] + 0.3 * torch.randn(per_class, 3, size, size, generator=g)).clamp(-1, 1) for k in range(3)}
    labels = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2])
    before = (protos[labels] + 0.3 * torch.randn(len(labels), 3, size, size, generator=g)).clamp(-1, 1)
    return protos, real, labels, before


def test_unlearning_metrics_known_answers():
    protos, real, labels, before = _suite_data()
    metrics = UnlearningMetrics(FlatEncoder(), real, forget_labels=[0])
    metrics.update(before, before.clone(), labels)
    out = metrics.compute()
    expected_keys = {
        "ID_forget", "ID_retain", "ID_real_forget", "acc_forget", "acc_retain",
        "acc_forget_before", "acc_retain_before", "FD_pre", "dFD_real", "different_people_cosine",
        "moved_forget", "nearest_changed_forget", "pixel_change_forget", "pixel_change_retain",
    }
    assert set(out) == expected_keys
    assert out["moved_forget"] == out["nearest_changed_forget"] == out["pixel_change_forget"] == 0.0
    assert out["ID_forget"] == pytest.approx(1.0, abs=1e-6) and out["ID_retain"] == pytest.approx(1.0, abs=1e-6)
    assert out["FD_pre"] == pytest.approx(0.0, abs=1e-9) and out["dFD_real"] == pytest.approx(0.0, abs=1e-12)
    assert out["acc_forget"] == out["acc_forget_before"] == 1.0 and out["acc_retain"] == 1.0
    assert 0.5 < out["ID_real_forget"] < 1.0

    # forget rows now show identity 1: identity gone, retain rows untouched
    after = before.clone()
    after[labels == 0] = protos[1]
    metrics.reset()
    metrics.update(before, after, labels)
    out = metrics.compute()
    assert out["acc_forget"] == 0.0 and out["acc_forget_before"] == 1.0 and out["acc_retain"] == 1.0
    assert out["ID_forget"] < 0.3 and out["ID_real_forget"] < 0.3 and out["ID_retain"] == pytest.approx(1.0, abs=1e-6)
    assert out["FD_pre"] == pytest.approx(0.0, abs=1e-9)
    # depth: every forget sample's nearest person changed; pixels moved on forget rows only
    centroids = F.normalize(torch.stack([F.normalize(real[k].flatten(1), dim=1).mean(0) for k in range(3)]), dim=1)
    pairs = (centroids @ centroids.T)[~torch.eye(3, dtype=torch.bool)]
    assert out["different_people_cosine"] == pytest.approx(pairs.mean().item(), abs=1e-5)
    assert out["nearest_changed_forget"] == 1.0
    expected_pixels = (after - before)[labels == 0].abs().flatten(1).mean(1).mean().item() * 127.5
    assert out["pixel_change_forget"] == pytest.approx(expected_pixels, rel=1e-5) and out["pixel_change_retain"] == 0.0
    # "moved": before/after cosine at or below different_people_cosine; -before (cosine -1) always is
    opposite = before.clone()
    opposite[labels == 0] = -before[labels == 0]
    metrics.reset()
    rows = metrics.update(before, opposite, labels)
    assert metrics.compute()["moved_forget"] == 1.0 and rows["moved"][labels != 0].sum() == 0
    metrics.reset()
    metrics.update(before, after, labels)
    out = metrics.compute()

    # reset() forgets the samples; a fresh object agrees
    fresh = UnlearningMetrics(FlatEncoder(), real, forget_labels=[0])
    fresh.update(before, after, labels)
    assert fresh.compute() == pytest.approx(out)


def test_unlearning_metrics_retain_shift_and_missing_keys():
    protos, real, labels, before = _suite_data()
    metrics = UnlearningMetrics(FlatEncoder(), real, forget_labels=[0])
    retain = labels != 0
    after = before.clone()
    after[retain] = -before[retain]  # retain samples ruined
    metrics.update(before[retain], after[retain], labels[retain])  # no forget rows at all
    out = metrics.compute()
    assert not {"ID_forget", "ID_real_forget", "acc_forget", "acc_forget_before"} & set(out)
    assert out["ID_retain"] == pytest.approx(-1.0, abs=1e-6) and out["acc_retain"] == 0.0
    assert out["FD_pre"] > 0.1 and out["dFD_real"] > 0.1


def test_unlearning_metrics_rejects_bad_input():
    _, real, labels, before = _suite_data()
    metrics = UnlearningMetrics(FlatEncoder(), real, forget_labels=[0])
    with pytest.raises(LegatoInputError, match="labels"):
        metrics.update(before, before, torch.full_like(labels, 7))
    with pytest.raises(LegatoInputError, match="image_size"):
        metrics.update(before[:, :, :4, :4], before[:, :, :4, :4], labels)
    with pytest.raises(LegatoInputError):
        UnlearningMetrics(FlatEncoder(), real, forget_labels=[5])
    larger = {k: F.interpolate(v, size=16) for k, v in real.items()}
    resized = UnlearningMetrics(FlatEncoder(), larger, [0], image_size=8)
    resized.update(before, before, labels)
    assert resized.compute()["acc_retain"] == 1.0


def test_unlearning_metrics_fid_and_face_rate(faces_dir):
    real = {k: load_person(faces_dir, name, 2, 32) for k, name in enumerate(PEOPLE[:2])}
    photos = torch.cat([load_person(faces_dir, name, 4, 32)[2:] for name in PEOPLE[:2]])  # held-out rows 0,0,1,1
    labels = torch.tensor([0, 0, 1, 1])
    noise = torch.rand(photos.shape, generator=torch.Generator().manual_seed(0)) * 2 - 1

    faces = UnlearningMetrics(FlatEncoder(), real, forget_labels=[0], face_rate=True)
    faces.update(photos, torch.zeros_like(photos), labels)
    out = faces.compute()
    assert out["face_rate_before"] == 1.0 and out["face_rate"] == 0.0
    assert not {"FID_pre", "dFID_real"} & set(out)

    fid = UnlearningMetrics(FlatEncoder(), real, forget_labels=[0], fid=True)
    fid.update(photos, noise, labels)  # retain samples turn into noise
    out = fid.compute()
    assert "face_rate" not in out
    assert out["FID_pre"] > 10.0 and out["dFID_real"] > 10.0
    assert out["dFD_real"] > 0.0


def test_intervals_known_answers():
    """Wilson intervals of an accuracy (textbook values), a bootstrap interval that brackets its mean and
    collapses on constant rows, and the tie rule."""
    from legato_pl.metrics.bootstrap import intervals_overlap, mean_ci, proportion_ci

    assert proportion_ci(0.5, 32) == pytest.approx((0.3363, 0.6637), abs=1e-4)
    assert proportion_ci(0.0, 32) == pytest.approx((0.0, 0.1072), abs=1e-4)
    assert proportion_ci(1.0, 10) == pytest.approx((0.7225, 1.0), abs=1e-4)
    assert all(math.isnan(v) for v in proportion_ci(0.5, 0))
    values = torch.tensor([0.0, 1.0] * 20)
    lo, hi = mean_ci(values, num_resamples=500)
    assert lo < 0.5 < hi and hi - lo < 0.4
    assert mean_ci(torch.full((9,), 0.25), num_resamples=50) == (0.25, 0.25)
    assert intervals_overlap((0.0, 0.1), (0.1, 0.3)) and not intervals_overlap((0.0, 0.1), (0.11, 0.3))


def test_a_frechet_distance_interval_holds_its_estimate():
    """Resampling repeats rows, which inflates a Fréchet distance: the raw percentile interval of two
    near-identical sets misses the estimate; re-centred on it (``estimate=``) it holds it."""
    from legato_pl.metrics.bootstrap import bootstrap_ci
    from legato_pl.metrics.frechet import feature_statistics, frechet_distance

    gen = torch.Generator().manual_seed(0)
    before = torch.randn(120, 16, generator=gen, dtype=torch.float64)
    after = before + 0.05 * torch.randn(120, 16, generator=gen, dtype=torch.float64)

    def fd(idx: torch.Tensor) -> float:
        return frechet_distance(*feature_statistics(before[idx]), *feature_statistics(after[idx]))

    estimate = fd(torch.arange(120))
    raw = bootstrap_ci(fd, 120, num_resamples=200)
    assert estimate < raw[0]  # the bias this option exists for
    lo, hi = bootstrap_ci(fd, 120, num_resamples=200, estimate=estimate)
    assert lo < estimate < hi and hi - lo == pytest.approx(raw[1] - raw[0])
