"""``otmap apply`` / :func:`otmap.experiments.apply.apply_folder`: image folders through a map.

The maps are built by hand (no training): a spec-built UNet whose weights make it compute
exactly ``y = -x``, and a stochastic map around a tiny UNet with a noise channel.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from otmap.cli.apply import add_parser
from otmap.core.costs import StrongQuadratic
from otmap.core.maps import DeterministicMap, StochasticMap
from otmap.errors import InputError, OTMapError
from otmap.experiments.apply import apply_folder
from otmap.model.result import TransportResult
from otmap.nets import build_net

SIZE = 16


@pytest.fixture(autouse=True)
def _single_thread(torch_single_thread):
    """Tiny networks: one torch thread (the machine is shared)."""


def _negating_unet(channels: int) -> torch.nn.Module:
    """A spec-built UNet (so its checkpoint loads without ``trusted``) computing ``-x``:
    the stem copies each input channel, the output conv takes ``-2`` of it, the residual adds
    ``x`` back."""
    net = build_net({"name": "UNet", "in_channels": channels, "out_channels": channels,
                     "channels": [4]})
    with torch.no_grad():
        net.stem.weight.zero_()
        net.stem.bias.zero_()
        net.out.weight.zero_()
        for i in range(channels):
            net.stem.weight[i, i, 1, 1] = 1.0
            net.out.weight[i, i] = -2.0
    return net


def _negating_result(channels: int = 1) -> TransportResult:
    shape = (channels, SIZE, SIZE)
    return TransportResult(DeterministicMap(_negating_unet(channels)),
                           cost=StrongQuadratic(reduction="mean"),
                           source_shape=shape, target_shape=shape)


def _stochastic_result() -> TransportResult:
    torch.manual_seed(0)
    net = build_net({"name": "UNet", "in_channels": 2, "out_channels": 1, "channels": [4]})
    with torch.no_grad():
        net.out.weight.normal_(0.0, 0.5)  # so the noise channel changes the output
    shape = (1, SIZE, SIZE)
    return TransportResult(StochasticMap(net, noise_dim=1, inject="channels"),
                           cost=StrongQuadratic(reduction="mean"),
                           source_shape=shape, target_shape=shape)


def _random_image(width: int, height: int, mode: str, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    shape = (height, width) if mode == "L" else (height, width, 3)
    return Image.fromarray(rng.integers(0, 256, size=shape, dtype=np.uint8), mode=mode)


@pytest.fixture
def image_dir(tmp_path: Path) -> Path:
    """PNGs of odd sizes and modes, an upper-case JPEG suffix, a nested folder, a non-image."""
    root = tmp_path / "in"
    (root / "sub" / "deeper").mkdir(parents=True)
    _random_image(37, 23, "RGB", 0).save(root / "rgb_37x23.png")
    _random_image(16, 16, "L", 1).save(root / "gray_16.png")
    _random_image(64, 80, "RGB", 2).save(root / "sub" / "big_64x80.png")
    _random_image(20, 30, "L", 3).save(root / "sub" / "deeper" / "photo.JPG", format="JPEG")
    (root / "notes.txt").write_text("not an image")
    return root


def _cli(argv: list[str]) -> int:
    """``otmap.cli.main`` once ``apply`` is wired there, else the same dispatch on a parser
    built with :func:`add_parser` (errors printed as ``otmap: error: ...``, exit 2)."""
    from otmap import cli

    sub_actions = [a for a in cli.build_parser()._actions
                   if isinstance(a, argparse._SubParsersAction)]
    if sub_actions and "apply" in sub_actions[0].choices:
        return cli.main(argv)
    parser = argparse.ArgumentParser(prog="otmap")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except OTMapError as err:
        import sys

        print(f"otmap: error: {err}", file=sys.stderr)
        return 2


def _pixels(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.array(img)


def test_apply_folder_mirrors_names_resizes_and_negates(image_dir, tmp_path):
    out = tmp_path / "out" / "new"  # created, parents included
    summary = apply_folder(_negating_result(1), image_dir, out, batch_size=3, progress=False)

    expected = ["gray_16.png", "rgb_37x23.png", "sub/big_64x80.png", "sub/deeper/photo.png"]
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert written == expected  # no temporary files left behind, notes.txt ignored
    assert summary["n_files"] == summary["n_images"] == summary["n_written"] == 4
    assert summary["skipped"] == [] and summary["size"] == [SIZE, SIZE]
    for rel in expected:
        with Image.open(out / rel) as img:
            assert img.size == (SIZE, SIZE) and img.mode == "L"

    # exact: the output is 255 - (the input converted to L and bicubic-resized by Pillow)
    with Image.open(image_dir / "rgb_37x23.png") as img:
        resized = np.array(img.convert("L").resize((SIZE, SIZE), Image.Resampling.BICUBIC))
    np.testing.assert_array_equal(_pixels(out / "rgb_37x23.png"), 255 - resized)
    with Image.open(image_dir / "gray_16.png") as img:  # already 16x16: not resampled
        np.testing.assert_array_equal(_pixels(out / "gray_16.png"), 255 - np.array(img))


def test_rgb_map_writes_rgb(image_dir, tmp_path):
    out = tmp_path / "out"
    apply_folder(_negating_result(3), image_dir, out, progress=False)
    with Image.open(image_dir / "sub" / "big_64x80.png") as img:
        resized = np.array(img.resize((SIZE, SIZE), Image.Resampling.BICUBIC))
    with Image.open(out / "sub" / "big_64x80.png") as img:
        assert img.mode == "RGB" and img.size == (SIZE, SIZE)
        np.testing.assert_array_equal(np.array(img), 255 - resized)
    with Image.open(out / "gray_16.png") as img:  # a gray input becomes RGB for an RGB map
        assert img.mode == "RGB"


def test_cli_apply_from_saved_checkpoint(image_dir, tmp_path, capsys):
    ckpt = _negating_result(1).save(tmp_path / "map.pt")
    out = tmp_path / "out"
    code = _cli(["apply", str(ckpt), "--input", str(image_dir), "--output", str(out),
                 "--batch-size", "2", "--quiet", "--device", "cpu"])
    assert code == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out.strip().splitlines()[-1])
    assert summary["n_written"] == 4 and summary["skipped"] == []
    assert "wrote 4 PNG files (16x16)" in captured.err
    assert (out / "sub" / "deeper" / "photo.png").is_file()


def test_corrupt_file_is_skipped_and_listed(image_dir, tmp_path, capsys):
    (image_dir / "bad.png").write_bytes(b"\x89PNG garbage, not an image" * 3)
    ckpt = _negating_result(1).save(tmp_path / "map.pt")
    out = tmp_path / "out"
    code = _cli(["apply", str(ckpt), "--input", str(image_dir), "--output", str(out),
                 "--quiet"])
    assert code == 0
    err = capsys.readouterr().err
    assert "skipping unreadable image" in err and "bad.png" in err
    assert "skipped 1 unreadable file(s)" in err
    assert not (out / "bad.png").exists()
    assert len([p for p in out.rglob("*.png")]) == 4

    summary = apply_folder(_negating_result(1), image_dir, tmp_path / "out2", progress=False)
    assert summary["skipped"] == [str(image_dir / "bad.png")]
    assert summary["n_images"] == summary["n_written"] == 4 and summary["n_files"] == 5


def test_corrupt_file_fails_in_fail_mode(image_dir, tmp_path, capsys):
    (image_dir / "bad.png").write_bytes(b"garbage")
    with pytest.raises(InputError, match="bad.png"):
        apply_folder(_negating_result(1), image_dir, tmp_path / "out", on_error="fail",
                     progress=False)
    ckpt = _negating_result(1).save(tmp_path / "map.pt")
    out = tmp_path / "out_cli"
    code = _cli(["apply", str(ckpt), "--input", str(image_dir), "--output", str(out),
                 "--on-error", "fail", "--batch-size", "1", "--quiet"])
    assert code == 2
    assert "otmap: error: cannot read image file" in capsys.readouterr().err
    # sorted order: bad.png comes first, so nothing was written after it
    assert not list(out.rglob("*.png"))


def test_stochastic_samples_write_k_files(image_dir, tmp_path):
    out = tmp_path / "out"
    summary = apply_folder(_stochastic_result(), image_dir, out, samples=3, progress=False)
    assert summary["n_images"] == 4 and summary["n_written"] == 12
    names = sorted(p.name for p in (out / "sub").glob("*.png"))
    assert names == ["big_64x80_s0.png", "big_64x80_s1.png", "big_64x80_s2.png"]
    assert len(list(out.rglob("*.png"))) == 12
    draws = [_pixels(out / "sub" / n) for n in names]
    assert draws[0].shape == (SIZE, SIZE)
    assert not np.array_equal(draws[0], draws[1])  # independent noises

    # without --samples: one draw, no suffix; the CLI seeds the noise (same seed, same output)
    ckpt = _stochastic_result().save(tmp_path / "stoch.pt")
    for name in ("a", "b"):
        assert _cli(["apply", str(ckpt), "--input", str(image_dir), "--output",
                     str(tmp_path / name), "--quiet"]) == 0
    np.testing.assert_array_equal(_pixels(tmp_path / "a" / "gray_16.png"),
                                  _pixels(tmp_path / "b" / "gray_16.png"))


def test_samples_on_deterministic_map_errors(image_dir, tmp_path, capsys):
    with pytest.raises(InputError, match="deterministic"):
        apply_folder(_negating_result(1), image_dir, tmp_path / "out", samples=3)
    ckpt = _negating_result(1).save(tmp_path / "map.pt")
    code = _cli(["apply", str(ckpt), "--input", str(image_dir), "--output",
                 str(tmp_path / "out"), "--samples", "2"])
    assert code == 2
    assert "deterministic" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_empty_folder_errors(tmp_path):
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "readme.txt").write_text("no images")
    with pytest.raises(InputError, match=r"no image files.*\.png.*\.webp.*empty") as info:
        apply_folder(_negating_result(1), empty, tmp_path / "out")
    assert str(empty) in str(info.value)
    with pytest.raises(InputError, match="does not exist"):
        apply_folder(_negating_result(1), tmp_path / "missing", tmp_path / "out")


def test_output_folder_checks(image_dir, tmp_path):
    result = _negating_result(1)
    with pytest.raises(InputError, match="is the input folder"):
        apply_folder(result, image_dir, image_dir / "sub" / "..", progress=False)
    # an output folder inside the input folder is not searched on a second run
    nested = image_dir / "mapped"
    assert apply_folder(result, image_dir, nested, progress=False)["n_files"] == 4
    assert apply_folder(result, image_dir, nested, progress=False)["n_files"] == 4
    # two inputs with the same stem would collide: refused before anything is written
    _random_image(8, 8, "L", 4).save(image_dir / "gray_16.bmp")
    with pytest.raises(InputError, match="would both be written"):
        apply_folder(result, image_dir, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_non_image_map_errors(image_dir, tmp_path):
    result = TransportResult(DeterministicMap(torch.nn.Identity()), cost=StrongQuadratic(),
                             source_shape=(4,), target_shape=(4,))
    with pytest.raises(InputError, match=r"image -> image map.*\(4,\)"):
        apply_folder(result, image_dir, tmp_path / "out")
    with pytest.raises(InputError, match="batch_size"):
        apply_folder(_negating_result(1), image_dir, tmp_path / "out", batch_size=0)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"batch_size": 0}, r"batch_size must be a positive integer, got 0: pass the images mapped "
                        r"at once \(--batch-size\)"),
    ({"batch_size": 2.0}, r"batch_size must be a positive integer, got 2\.0"),
    ({"batch_size": True}, r"batch_size must be a positive integer, got True"),
    ({"samples": 0}, r"samples must be a positive integer, got 0: pass the draws per input"),
    ({"on_error": "skp"}, r"unknown on_error 'skp' \(did you mean 'skip'\?\); choose one of "
                          r"\['skip', 'fail'\]"),
])
def test_bad_options_name_the_fix(image_dir, tmp_path, kwargs, match):
    with pytest.raises(InputError, match=match):
        apply_folder(_negating_result(1), image_dir, tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()


def test_numpy_integers_are_counts(image_dir, tmp_path):
    summary = apply_folder(_negating_result(1), image_dir, tmp_path / "out",
                           batch_size=np.int64(2), progress=False)
    assert summary["n_written"] == summary["n_files"] == 4
