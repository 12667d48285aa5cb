"""Bad data files and data specs (otmap.data.specs): each ends in an otmap error naming the fix,
never a raw traceback (issue 11); the property tests feed malformed specs, files and saved arrays
to :func:`sampler_from_spec` and accept only success or an :class:`OTMapError`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from otmap.data.specs import load_samples, sampler_from_spec
from otmap.errors import InputError
from tests.fuzz import ANY, ARRAYS, FUZZ, SAMPLE_SETS, ok_or_otmap_error

pytestmark = pytest.mark.usefixtures("torch_single_thread")


# ----------------------------------------------------------------------------- data files

class _Touch:
    """Unpickling this would create ``marker``: proof that a data file ran no code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _write_bad_file(tmp_path: Path, kind: str) -> Path:
    """One bad data file of each kind the issue lists (and a few neighbours)."""
    if kind == "npy-objects":
        path = tmp_path / "objects.npy"
        np.save(path, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    elif kind == "npy-strings":
        path = tmp_path / "strings.npy"
        np.save(path, np.array([["1", "2"], ["3", "x"]]))
    elif kind == "npy-not-npy":
        path = tmp_path / "text.npy"
        path.write_text("1,2\n3,4\n")
    elif kind == "npy-truncated":
        path = tmp_path / "truncated.npy"
        np.save(path, np.ones((10, 2)))
        path.write_bytes(path.read_bytes()[:-8])
    elif kind == "csv-non-number":
        path = tmp_path / "bad.csv"
        path.write_text("1,2\n3,x\n")
    elif kind == "csv-ragged":
        path = tmp_path / "ragged.csv"
        path.write_text("1,2\n3,4,5\n")
    elif kind == "csv-binary":
        path = tmp_path / "binary.csv"
        path.write_bytes(bytes(range(256)))
    elif kind == "pt-pickled-object":
        path = tmp_path / "object.pt"
        torch.save(_Touch(tmp_path / "code-ran"), path)
    elif kind == "pt-not-torch":
        path = tmp_path / "text.pt"
        path.write_text("not a torch file")
    return path


@pytest.mark.parametrize("kind, fragments", [
    ("npy-objects", ["holds Python objects", "np.save(path, np.asarray(x, dtype=np.float32))"]),
    ("npy-strings", ["non-numeric values (dtype <U1)", "np.asarray(x, dtype=np.float32)"]),
    ("npy-not-npy", ["is not a .npy file", "np.save(path, x)"]),
    ("npy-truncated", ["damaged or truncated", "write it again"]),
    ("csv-non-number", ["not a CSV of numbers", "'x'", "one sample per row"]),
    ("csv-ragged", ["not a CSV of numbers", "one sample per row"]),
    ("csv-binary", ["not a CSV of numbers", "keep only numbers"]),
    ("pt-pickled-object", ["pickled Python objects", "torch.save(torch.as_tensor(x"]),
    ("pt-not-torch", ["not a torch file or is damaged", "torch.save(x, path)"]),
])
def test_bad_data_files_name_the_fix(tmp_path, kind, fragments):
    path = _write_bad_file(tmp_path, kind)
    for load in (load_samples, lambda p: sampler_from_spec({"file": str(p)}, "source")):
        with pytest.raises(InputError) as err:
            load(path)
        message = str(err.value)
        assert str(path) in message
        for fragment in fragments:
            assert fragment in message
    assert not (tmp_path / "code-ran").exists()


def test_a_data_file_path_must_be_a_path():
    with pytest.raises(InputError, match="a data file is a path"):
        sampler_from_spec({"file": 3}, "target")


def test_good_data_files_load_as_float32(tmp_path):
    np.save(tmp_path / "big_endian.npy", np.arange(6, dtype=">f8").reshape(3, 2))
    (tmp_path / "ok.csv").write_text("0,1\n2,3\n4,5\n")
    torch.save(torch.arange(6.0).reshape(3, 2), tmp_path / "ok.pt")
    for name in ("big_endian.npy", "ok.csv", "ok.pt"):
        x = load_samples(tmp_path / name)
        assert x.dtype == torch.float32 and torch.equal(x, torch.arange(6.0).reshape(3, 2))


# --------------------------------------------------------- odd values the property tests found

@pytest.mark.parametrize("spec, fragment", [
    ({"dataset": []}, "unknown dataset"),
    ({"toy": "moons", "name": "x"}, "unknown option(s) ['name']"),
])
def test_odd_data_specs(spec, fragment):
    with pytest.raises(InputError) as err:
        sampler_from_spec(spec, "source")
    assert fragment in str(err.value)


# ----------------------------------------------------------------------------- properties

_SPEC_KEYS = ["toy", "file", "dataset", "degrade", "project", "lazy", "part", "classes", "size",
              "dim", "noise", "name", "sigma", "root"]
_SPEC_NAMES = st.sampled_from(["moons", "gaussian", "8blobs", "digits", "folder", "mnist",
                               "unit_circle", "GaussianNoise", "missing.npy"])
_SPECS = st.one_of(
    ANY, _SPEC_NAMES,
    st.dictionaries(st.sampled_from(_SPEC_KEYS), st.one_of(ANY, _SPEC_NAMES), max_size=3),
    st.fixed_dictionaries({"toy": st.sampled_from(["moons", "gaussian", "8blobs", "circles"])},
                          optional={key: ANY for key in ("noise", "dim", "scale", "whiten",
                                                         "project", "std", "degrade")}),
)


def _draws(spec_or_path: dict | str | Path) -> None:
    """Four samples of a data spec (a path: its file spec), which must be [4, ...] if drawn."""
    spec = spec_or_path if isinstance(spec_or_path, dict | str) else {"file": str(spec_or_path)}
    assert sampler_from_spec(spec, "source").sample(4).shape[0] == 4


@FUZZ
@given(spec=_SPECS)
def test_data_specs_build_or_raise_otmap_error(spec):
    ok_or_otmap_error(_draws, spec)


_NPY_MAGIC = b"\x93NUMPY\x01\x00"
_FILE_BYTES = st.one_of(
    st.binary(max_size=300),
    st.binary(max_size=300).map(lambda b: _NPY_MAGIC + b),
    st.text(alphabet="0123456789.,-e x\nnaif", max_size=60).map(str.encode),
)


@FUZZ
@given(content=_FILE_BYTES, suffix=st.sampled_from([".npy", ".pt", ".csv"]))
def test_data_files_load_or_raise_otmap_error(tmp_path, content, suffix):
    path = tmp_path / f"data{suffix}"
    path.write_bytes(content)
    ok_or_otmap_error(_draws, path)


@FUZZ
@given(array=st.one_of(SAMPLE_SETS, ARRAYS,
                       hnp.arrays(st.sampled_from(["U3", "S2", "M8[D]", "f4,i4", ">f8", ">i2"]),
                                  hnp.array_shapes(max_dims=2))),
       suffix=st.sampled_from([".npy", ".pt", ".csv"]))
def test_saved_arrays_load_or_raise_otmap_error(tmp_path, array, suffix):
    path = tmp_path / f"array{suffix}"
    if suffix == ".pt" and array.dtype.kind in "biufc" and array.dtype.isnative:
        torch.save(torch.as_tensor(array), path)
    elif suffix == ".csv" and array.dtype.kind == "f" and array.ndim == 2:
        np.savetxt(path, array, delimiter=",")
    else:
        path = path.with_suffix(".npy")
        np.save(path, array)
    ok_or_otmap_error(_draws, path)
