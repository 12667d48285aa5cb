"""The one training loop: progress, metrics.jsonl, checkpoints, exact resume, plots.

A run folder holds::

    config.yaml          the resolved configuration
    metrics.jsonl        one JSON object per logged step (losses, evaluation metrics, time)
    checkpoints/last.pt  a complete checkpoint (see otmap.checkpoint), written atomically
    plots/*.png          training curves; for 1-D/2-D vector data the transport picture
"""

from __future__ import annotations

import copy
import json
import math
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
import yaml
from torch import Tensor
from tqdm.auto import tqdm

from otmap.benchmarks.gaussian import BuresMap
from otmap.checkpoint import CHECKPOINT_NAME, atomic_save, read_checkpoint
from otmap.config import TrainConfig
from otmap.data import Sampler
from otmap.data.samplers import to_device_async
from otmap.diagnostics import (
    DIVERGENCE_ADVICE,
    FAKE_SOLUTION_ADVICE,
    DivergenceMonitor,
    OscillationDetector,
    significantly_worse,
)
from otmap.errors import CheckpointError, InputError, TrainingDivergedError
from otmap.metrics import energy_distance, transport_cost
from otmap.result import TransportResult
from otmap.solver import NeuralOT
from otmap.train import plots
from otmap.train.distributed import Ranks, barrier, mean_over_ranks, rank_seed

#: keys of the final row that judge the run's end (dropped when the run is resumed)
END_OF_RUN_KEYS = ("worse_than_linear", "restored_step")

#: ``evaluate(result, x_eval, y_eval) -> {name: float}``: extra metrics at every evaluation.
Evaluator = Callable[[TransportResult, Tensor, Tensor], dict[str, float]]


class Trainer:
    """Runs :class:`NeuralOT` for ``config.steps`` outer steps.

    The solver must already be built (the caller seeds torch first, so initial weights and the
    held-out evaluation sets are reproducible); ``resume=True`` reloads ``run_dir``'s checkpoint
    (weights, optimisers, EMA, step, RNG state) and continues exactly where it stopped.

    Under torchrun (``ranks.distributed``) every process runs this loop on its own streams;
    statistics are averaged over the processes at log steps and only rank 0 evaluates, writes
    the run folder and shows progress (see :mod:`otmap.train.distributed`).
    """

    def __init__(self, solver: NeuralOT, source: Sampler, target: Sampler, config: TrainConfig,
                 result: TransportResult, *, run_dir: str | Path | None = None,
                 record: dict | None = None, evaluator: Evaluator | None = None,
                 progress: bool = True, resume: bool = False, ranks: Ranks | None = None,
                 channels_last: bool = False) -> None:
        self.solver, self.source, self.target, self.config = solver, source, target, config
        self.ranks = ranks or Ranks()
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.result = result
        self.device = next(solver.map.parameters()).device
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.record = record or {}
        self.evaluator = evaluator
        self.progress = progress and self.ranks.is_main
        self.rows: list[dict] = []
        n = config.eval_samples
        self.x_eval = source.sample(n).to(self.device)
        self.y_eval = target.sample(n).to(self.device)
        # a second, independent target sample: the fidelity ratio's reference
        y_ref = target.sample(n).to(self.device)
        self.energy_floor = energy_distance(y_ref, self.y_eval, unbiased=False)
        self.linear_fidelity = self._linear_fidelity(y_ref)
        self.detector = OscillationDetector()
        self.monitor = DivergenceMonitor()
        self._best_state: dict | None = None
        self._warned: set[str] = set()
        if resume:
            self._resume()
        elif self.run_dir is not None:
            self._start_run_dir()
        self._reseed()

    # -- run folder ---------------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path:
        assert self.run_dir is not None
        return self.run_dir / "checkpoints" / CHECKPOINT_NAME

    def _start_run_dir(self) -> None:
        assert self.run_dir is not None
        if self.checkpoint_path.exists():
            raise InputError(
                f"{self.run_dir} already holds a run; continue it with --resume "
                "(resume=True) or choose another run folder"
            )
        barrier(self.ranks)  # every rank has checked before rank 0 writes
        if not self.ranks.is_main:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "config.yaml").write_text(yaml.safe_dump(self.record, sort_keys=False))
        (self.run_dir / "metrics.jsonl").write_text("")

    def _resume(self) -> None:
        if self.run_dir is None:
            raise InputError("resume needs a run folder (run_dir=...)")
        data = read_checkpoint(self.checkpoint_path)
        if data.get("training") is None:
            raise CheckpointError(f"{self.checkpoint_path} holds no training state to resume")
        self.solver.load_training_state(data["training"])
        rng = data.get("rng") or {}
        if "torch" in rng:
            torch.set_rng_state(rng["torch"])
        cuda_state = rng.get("cuda")
        if isinstance(cuda_state, list):  # older checkpoints: one state per visible GPU
            cuda_state = cuda_state[0] if cuda_state else None
        if cuda_state is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state(cuda_state, self.device)
        # drop the rows logged after the checkpoint so the log equals an uninterrupted run's
        step = self.solver.step
        path = self.run_dir / "metrics.jsonl"
        lines = path.read_text().splitlines() if path.exists() else []
        self.rows = [r for r in map(json.loads, filter(None, lines)) if r["step"] <= step]
        for row in self.rows:  # the detectors continue from the logged evaluations
            for key in END_OF_RUN_KEYS:  # the earlier end is no longer the end
                row.pop(key, None)
            if "fidelity" in row:
                self.detector.update(row["fidelity"])
                self.monitor.update(row["step"], row["fidelity"])
        barrier(self.ranks)  # every rank has read the checkpoint before rank 0 writes
        if self.ranks.is_main:
            path.write_text("".join(json.dumps(r) + "\n" for r in self.rows))

    def _reseed(self) -> None:
        """Under torchrun: restart every rank's stream from ``(seed, rank, step)``."""
        if self.ranks.distributed:
            torch.manual_seed(rank_seed(self.config.seed, self.ranks.rank, self.solver.step))

    def save_checkpoint(self, training: dict | None = None) -> None:
        """Write the checkpoint: the result's model and the solver's ``training`` state
        (default: the current one)."""
        if self.run_dir is None or not self.ranks.is_main:
            return
        data = self.result.checkpoint()
        data["training"] = self.solver.training_state() if training is None else training
        data["rng"] = {"torch": torch.get_rng_state(),
                       "cuda": (torch.cuda.get_rng_state(self.device)
                                if self.device.type == "cuda" else None)}
        atomic_save(data, self.checkpoint_path)

    # -- loop ---------------------------------------------------------------------------------
    def _batch(self, sampler: Sampler) -> Callable[[], Tensor]:
        """``() -> [batch_size, *shape]`` on the device (image batches in the nets' memory
        format; CPU batches pinned for an asynchronous copy to a GPU)."""
        n, device, fmt = self.config.batch_size, self.device, self.memory_format

        def draw() -> Tensor:
            x = sampler.sample(n)
            if x.dim() == 4:
                x = x.contiguous(memory_format=fmt)
            return to_device_async(x, device)

        return draw

    @torch.no_grad()
    def _linear_fidelity(self, y_fit: Tensor) -> float | None:
        """Fidelity of the linear (Bures) OT map between Gaussians moment-matched to the
        held-out source and a second target sample: the bar a deterministic vector map must
        clear (None where it does not apply: stochastic maps, images, embeddings)."""
        x, y = self.x_eval, self.y_eval
        if (self.result.map.stochastic or x.dim() != 2 or x.shape != y.shape
                or not isinstance(self.solver.embedding, torch.nn.Identity)):
            return None
        try:
            linear = BuresMap.fit(x.cpu().double(), y_fit.cpu().double())
        except InputError:  # degenerate moments: no baseline, no check
            return None
        tx = linear(x.cpu().double()).to(y.device, y.dtype)
        return energy_distance(tx, y, unbiased=False) / self.energy_floor

    def _warn(self, key: str, message: str) -> None:
        """Print and warn once per kind of problem."""
        if key in self._warned:
            return
        self._warned.add(key)
        tqdm.write(f"otmap: warning: {message}")
        warnings.warn(message, RuntimeWarning, stacklevel=3)

    def _watch_quality(self, out: dict[str, float]) -> None:
        """Divergence of any map; keeps a copy of the best map seen."""
        step, fidelity = self.solver.step, out["fidelity"]
        if self.monitor.update(step, fidelity):
            self._warn("diverging", (
                f"the held-out fidelity rose at each of the last evaluations, to "
                f"{fidelity:.3g} at step {step} from {self.monitor.best:.3g} at step "
                f"{self.monitor.best_step}: the map is diverging; the best map seen is kept "
                f"and returned if the run ends worse. {DIVERGENCE_ADVICE}"))
        out["diverging"] = float(self.monitor.fired)
        if self.linear_fidelity is not None:
            out["linear_fidelity"] = self.linear_fidelity
        if self.monitor.best_step == step:  # a CPU copy (not kept across --resume)
            self._best_state = {"step": step, "fidelity": fidelity,
                                "map": _copy_state(self.result.map),
                                "potential": _copy_state(self.solver.potential)}

    def _should_restore(self, last: dict) -> bool:
        """Whether the run's final evaluation ``last`` is clearly worse than the best kept."""
        best = self._best_state
        return (best is not None and "fidelity" in last and best["step"] != last["step"]
                and significantly_worse(last["fidelity"], best["fidelity"]))

    def _restore_best(self, last: dict) -> None:
        """Put the best map seen back into the result (rank 0 only: training is over)."""
        best = self._best_state
        assert best is not None
        self.result.map.load_state_dict(best["map"])
        self.solver.potential.load_state_dict(best["potential"])
        message = (f"the run ended with fidelity {last['fidelity']:.3g}, clearly worse than "
                   f"{best['fidelity']:.3g} at step {best['step']}: the map of step "
                   f"{best['step']} is returned (and saved as the run's model); the training "
                   f"state of the last step stays in the checkpoint. {DIVERGENCE_ADVICE}")
        self._warn("restored", message)
        last["restored_step"] = best["step"]

    def _check_returned_map(self, last: dict) -> None:
        """The map a user takes home against the linear OT map between moment-matched
        Gaussians (judged at the end only: mid-run, a map already far more accurate than the
        linear one can still have a worse pushforward, as on the W2 benchmark at D = 64)."""
        if self.linear_fidelity is None or "fidelity" not in last:
            return
        fidelity = (self._best_state["fidelity"] if "restored_step" in last
                    else last["fidelity"])
        last["worse_than_linear"] = float(
            significantly_worse(fidelity, self.linear_fidelity, factor=1.5, margin=0.25))
        if last["worse_than_linear"]:
            self._warn("worse_than_linear", (
                f"the returned map's pushforward is farther from the target (fidelity "
                f"{fidelity:.3g}) than that of the linear OT map between moment-matched "
                f"Gaussians ({self.linear_fidelity:.3g}): the map has not learned the "
                f"transport. Train longer (steps), raise k_map, or lower the learning rates; "
                f"otmap.benchmarks.BuresMap.fit(x, y) is that linear map"))

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Held-out metrics.

        * ``energy``: energy distance of T#(mu x S) (one z per x) to held-out target samples;
        * ``fidelity``: the same (V-statistic) divided by the energy distance between two
          independent target samples of the same size: ~1 means as close as the target to itself;
        * ``transport_cost``: ``mean 1/2 |Q(x) - T(x, z)|^2``;
        * ``diversity`` (stochastic maps): mean over x of the total variance of ``T(x, .)``;
        * the evaluator's metrics (e.g. L2-UVP against a known map).
        """
        tx = self.result.transport(self.x_eval)
        out = {"energy": energy_distance(tx, self.y_eval),
               "fidelity": energy_distance(tx, self.y_eval, unbiased=False) / self.energy_floor}
        qx = self.solver.embedding(self.x_eval)
        if qx.shape == tx.shape:
            out["transport_cost"] = transport_cost(qx, tx)
        if self.result.map.stochastic:
            txz = self.result.transport(self.x_eval[:256], num_samples=8)
            out["diversity"] = txz.var(1).flatten(1).sum(1).mean().item()
        if self.evaluator is not None:
            out.update(self.evaluator(self.result, self.x_eval, self.y_eval))
        if self.result.map.stochastic:  # fake solutions are a weak-cost failure
            if self.detector.update(out["fidelity"]):
                self._warn("oscillating", FAKE_SOLUTION_ADVICE)
            out["oscillating"] = float(self.detector.fired)
        self._watch_quality(out)
        return out

    def run(self) -> TransportResult:
        cfg, solver = self.config, self.solver
        sample_x, sample_y = self._batch(self.source), self._batch(self.target)
        bar = tqdm(total=cfg.steps, initial=solver.step, disable=not self.progress,
                   desc=self.record.get("name", "otmap"), dynamic_ncols=True)
        start = time.perf_counter() - (self.rows[-1]["time"] if self.rows else 0.0)
        last_good = solver.step
        training = None  # the last step's training state, once the best map is restored
        while solver.step < cfg.steps:
            stats = solver.train_step(sample_x, sample_y)
            step = solver.step
            final = step == cfg.steps
            log = step % cfg.log_every == 0 or final
            save = step % cfg.checkpoint_every == 0 or final
            if log or save:  # the only host synchronisation: at log and checkpoint steps
                stats = mean_over_ranks(stats, self.ranks, self.device)
                row = {"step": step, **{k: float(v) for k, v in stats.items()},
                       "lr_map": solver.map_optimizer.param_groups[0]["lr"]}
                bad = {k: v for k, v in row.items() if not math.isfinite(v)}
                if bad:
                    self._diverged(step, last_good, bad)
            if log and self.ranks.is_main:
                if step % cfg.eval_every == 0 or final:
                    row.update(self.evaluate())
                if final:
                    if self._should_restore(row):  # keep the last state for exact resume
                        training = _copy_tree(solver.training_state())
                        self._restore_best(row)
                    self._check_returned_map(row)
                row["time"] = time.perf_counter() - start
                self._log(row)
                bar.set_postfix({k: f"{row[k]:.4g}" for k in
                                 ("loss_map", "cost", "fidelity", "l2_uvp") if k in row})
            if save:
                self.save_checkpoint(training)
                last_good = step
                if not final:
                    self._reseed()
            bar.update(1)
        bar.close()
        self.result.training = training or solver.training_state()
        if self.run_dir is not None and self.ranks.is_main:
            self.plot()
        barrier(self.ranks)
        return self.result

    def _log(self, row: dict) -> None:
        self.rows.append(row)
        if self.run_dir is not None:
            with open(self.run_dir / "metrics.jsonl", "a") as fh:
                fh.write(json.dumps(row) + "\n")

    def _diverged(self, step: int, last_good: int, bad: dict) -> None:
        where = (f"the checkpoint of step {last_good} in {self.checkpoint_path} is kept"
                 if self.run_dir is not None and last_good > 0 else "nothing was saved")
        raise TrainingDivergedError(
            f"training diverged at step {step}: {bad} is not finite; {where}. Lower lr_map and "
            "lr_potential, set grad_clip (e.g. 10), or standardise the data"
        )

    def _plot_images(self, x: Tensor, folder: Path, name: str) -> None:
        """``samples.png``: T(x) for noise inputs; for image inputs, rows of inputs and
        outputs (several samples per input for a stochastic map)."""
        if x.dim() != 4:
            plots.plot_image_grid(self.result.transport(x), folder / "samples.png",
                                  title=f"{name}: T(x)")
            return
        x = x[:8]
        k = 4 if self.result.map.stochastic else 1
        ys = self.result.transport(x, num_samples=k)
        shown = x if x.shape[1:] == ys.shape[2:] else self.solver.embedding(x).cpu()
        rows = torch.cat([shown.unsqueeze(1), ys], dim=1)
        plots.plot_image_grid(rows.flatten(0, 1), folder / "samples.png", nrow=k + 1,
                              title=f"{name}: input | T(x" + (", z)" if k > 1 else ")"))

    def plot(self) -> None:
        """Training curves, and the transport picture for 1-D/2-D vector data."""
        assert self.run_dir is not None
        folder = self.run_dir / "plots"
        name = self.record.get("name", "otmap")
        plots.plot_training_curves(self.rows, folder / "training.png", title=name)
        x, y = self.x_eval.cpu(), self.y_eval.cpu()
        if y.dim() == 4:
            self._plot_images(x[:64], folder, name)
        if x.dim() != 2 or y.dim() != 2 or x.shape[1] != y.shape[1] or y.shape[1] > 2:
            return
        tx = self.result.transport(x)
        if y.shape[1] == 1:
            plots.plot_transport_1d(x, tx, y, folder / "transport.png", title=name)
        elif self.result.map.stochastic:
            txz = self.result.transport(x, num_samples=8)
            plots.plot_stochastic_2d(x, txz, y, folder / "transport.png", title=name)
        else:
            plots.plot_transport_2d(x, tx, y, folder / "transport.png", title=name)


def _copy_state(module: torch.nn.Module) -> dict[str, Tensor]:
    """A detached CPU copy of ``module``'s state dict."""
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}


def _copy_tree(state: dict) -> dict:
    """A CPU copy of a nested training state (tensors copied, everything else deep-copied)."""
    return {k: (_copy_tree(v) if isinstance(v, dict) else
                v.detach().to("cpu", copy=True) if isinstance(v, Tensor) else copy.deepcopy(v))
            for k, v in state.items()}
