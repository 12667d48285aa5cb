"""Bad command lines (otmap.cli): each ends in a message naming the fix, never a traceback
(issue 11); the property test feeds malformed overrides and flags to ``otmap train``."""

from __future__ import annotations

import tempfile

import pytest
import yaml
from hypothesis import event, given, settings
from hypothesis import strategies as st

from otmap.cli import main
from tests.fuzz import FUZZ

pytestmark = pytest.mark.usefixtures("torch_single_thread")


def test_bad_data_file_through_the_cli(tmp_path, capsys):
    path = tmp_path / "bad.csv"
    path.write_text("1,2\n3,x\n")
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({"source": {"file": str(path)}, "target": {"toy": "8blobs"}}))
    assert main(["train", str(config), "--out", str(tmp_path / "run"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "otmap: error: data file" in err and "not a CSV of numbers" in err
    assert "Traceback" not in err


def test_lr_map_fast_on_the_command_line(tmp_path, capsys):
    assert main(["train", "train.lr_map=fast", "--out", str(tmp_path / "run"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "otmap: error: train.lr_map must be positive" in err and "'fast'" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("override, fragment", [
    ("benchmark.dim=2", "unknown benchmark None"),
    ("benchmark=3", "benchmark must be a mapping"),
    ("name=[1]", "name must be a string"),
])
def test_odd_run_configs_on_the_command_line(tmp_path, capsys, override, fragment):
    assert main(["train", override, "--out", str(tmp_path / "run"), "--quiet"]) == 2
    assert fragment in capsys.readouterr().err


# ----------------------------------------------------------------------------- properties

_CLI_KEYS = ["train.lr_map", "train.lr_potential", "train.weight_decay", "train.grad_clip",
             "train.ema_decay", "train.betas", "train.batch_size", "train.k_map", "train.seed",
             "train.lr_schedule", "train.gradient_penalty", "train.precision", "train.device",
             "train.compile", "train.steps", "train.stepz", "train", "source", "source.toy",
             "target.file", "cost", "cost.name", "cost.gamma", "map.hidden", "map", "name",
             "benchmark.dim"]
_CLI_VALUES = st.one_of(
    st.sampled_from(["fast", "", "-1", "0", "2", "0.5", "1e-3", "nan", ".inf", "null", "true",
                     "[1, 2]", "[0.5, 0.9]", "{a: 1}", "{name: WeakQuadratic, gamma: -1}", "[",
                     "moons", "x.npy", "WeakKernel", "cuda", "auto"]),
    st.text(max_size=5),
)
_CLI_ARGS = st.lists(st.one_of(st.tuples(st.sampled_from(_CLI_KEYS), _CLI_VALUES).map("=".join),
                               st.sampled_from(["--resume", "--nproc", "0", "extra", "-x"])),
                     max_size=3)
#: a run that succeeds is one step of tiny networks
_CLI_BASE = ["train.steps=1", "train.batch_size=4", "train.eval_samples=16",
             "map.hidden=[4]", "potential.hidden=[4]"]


@settings(FUZZ, max_examples=20)  # the runs that succeed draw plots: seconds each
@given(args=_CLI_ARGS)
def test_cli_exits_with_a_message_never_a_traceback(args, tmp_path, capsys):
    with tempfile.TemporaryDirectory(dir=tmp_path) as out:
        try:
            code = main(["train", *_CLI_BASE, *args, "--out", out, "--quiet"])
        except SystemExit as exit_:  # argparse: usage and message on stderr
            code = exit_.code
    err = capsys.readouterr().err
    event(f"exit code {code}")
    assert code in (0, 2)
    if code == 2:
        assert "error:" in err
