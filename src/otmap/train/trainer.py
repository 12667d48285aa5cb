"""The one training loop: progress, metrics.jsonl, checkpoints, exact resume, plots.

A run folder holds::

    config.yaml          the resolved configuration
    metrics.jsonl        one JSON object per logged step (losses, evaluation metrics, time)
    checkpoints/last.pt  a complete checkpoint (see otmap.model.checkpoint), written atomically
    checkpoints/best.pt  the map of the evaluation with the best ``best_metric``
    checkpoints/step-*.pt  the last ``keep_checkpoints`` checkpoints, numbered by step
    plots/*.png          training curves; for 1-D/2-D vector data the transport picture
    plots/latest/*.png   the same pictures, redrawn at every evaluation (a copy in
                         plots/step-XXXXXX/ every ``plot_every`` evaluations)
    tensorboard/, wandb/ the optional backends of ``train.loggers`` (otmap.train.loggers)

Checkpoints are written every ``checkpoint_every`` steps, every ``checkpoint_minutes`` of wall
time, at the end, and when SIGTERM or SIGINT stops the run after its current step
(:class:`~otmap.errors.TrainingInterrupted`). Non-finite losses stop the run or, with
``on_divergence="rollback"``, roll it back to the last checkpoint with lower learning rates.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import shutil
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
import yaml
from torch import Tensor
from tqdm.auto import tqdm

from otmap.core.solver import NeuralOT
from otmap.data import Sampler
from otmap.data.samplers import to_device_async
from otmap.errors import (
    CheckpointError,
    InputError,
    QualityWarning,
    TrainingDivergedError,
    TrainingInterrupted,
)
from otmap.metrics import energy_distance
from otmap.model.checkpoint import (
    BEST_NAME,
    CHECKPOINT_NAME,
    atomic_save,
    keep_numbered,
    read_checkpoint,
)
from otmap.model.result import TransportResult
from otmap.train.config import AUTO_BEST_METRICS, TrainConfig, metric_goal
from otmap.train.distributed import Ranks, barrier, mean_over_ranks, rank_seed
from otmap.train.evaluation import (
    DIVERGENCE_ADVICE,
    FAKE_SOLUTION_ADVICE,
    DivergenceMonitor,
    OscillationDetector,
    PotentialRunaway,
    held_out_metrics,
    linear_fidelity,
    significantly_worse,
)
from otmap.train.loggers import Logger, build_loggers
from otmap.viz import plots

#: keys of the final row that judge the run's end (dropped when the run is resumed)
END_OF_RUN_KEYS = ("worse_than_linear", "restored_step", "inverse_fidelity",
                   "inverse_worse_than_linear")

#: ``(factor, margin)`` by which result.inverse's fidelity must exceed the linear inverse map's
#: to be reported: looser than the map's (1.5, 0.25), as the energy distance on 2,000 samples
#: sees errors of 1-2 % L2-UVP (Gaussian pairs in 4-d, where the linear map is exact: fidelity
#: 2.8-3.9 against 1.18 for inverses within 2 %); a potential that learned nothing is far above
INVERSE_BAR = (5.0, 2.0)

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
        self._base_lrs = solver.lr_map, solver.lr_potential  # before any rollback's scaling
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
        self.inverse_baseline = self._inverse_baseline()
        self.detector = OscillationDetector()
        self.monitor = DivergenceMonitor()
        self.runaway = PotentialRunaway()
        # the best evaluation by best_metric: {"step", "metric", "value", "fidelity"} (and,
        # without a run folder, CPU copies "map" and "potential"; else in best.pt)
        self._best: dict | None = None
        self.rollbacks = 0
        self.on_divergence = (config.on_divergence if config.on_divergence != "auto" else
                              "rollback" if self.y_eval.dim() == 4 else "stop")
        self._good: dict | None = None  # an in-memory state to roll back to (else last.pt)
        self._signal: int | None = None  # SIGTERM / SIGINT caught during run()
        self._start = time.perf_counter()
        self._saved_at = time.monotonic()
        self._warned: set[str] = set()
        self._new_warnings: list[tuple[str, str]] = []  # (key, message), for the loggers
        self._drawn: tuple[dict, list[Path]] | None = None  # plots/latest/: (row, paths)
        if resume:
            self._resume()
        elif self.run_dir is not None:
            self._start_run_dir()
        self._reseed()
        # rank 0 with a run folder: metrics.jsonl and the backends of train.loggers
        self.loggers: list[Logger] = build_loggers(
            config.loggers, self.run_dir if self.ranks.is_main else None, self.record,
            start_step=self.solver.step)

    # -- run folder ---------------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path:
        assert self.run_dir is not None
        return self.run_dir / "checkpoints" / CHECKPOINT_NAME

    @property
    def best_path(self) -> Path:
        assert self.run_dir is not None
        return self.run_dir / "checkpoints" / BEST_NAME

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
        self.rollbacks = int(data["training"].get("rollbacks", 0))
        if self.rollbacks:
            self._scale_learning_rates()
        rng = data.get("rng") or {}
        if "torch" in rng:
            torch.set_rng_state(rng["torch"])
        cuda_state = rng.get("cuda")
        if isinstance(cuda_state, list):  # older checkpoints: one state per visible GPU
            cuda_state = cuda_state[0] if cuda_state else None
        if cuda_state is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state(cuda_state, self.device)
        if self.ranks.is_main and self.best_path.is_file():  # best.pt survives --resume
            best = read_checkpoint(self.best_path).get("best")
            # but not an earlier end's extra evaluation (off the eval_every schedule), which
            # an uninterrupted run would not have made: it is overwritten at the next one
            if best and (best["step"] % self.config.eval_every == 0
                         or best["step"] == self.config.steps):
                self._best = {k: best[k] for k in ("step", "metric", "value", "fidelity")}
        path = self.run_dir / "metrics.jsonl"
        rows = []
        for line in filter(None, path.read_text().splitlines() if path.exists() else []):
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:  # the last line, cut by a kill -9
                break
        barrier(self.ranks)  # every rank has read the checkpoint before rank 0 writes
        self._keep_rows_until(self.solver.step, rows)

    def _keep_rows_until(self, step: int, rows: list[dict]) -> None:
        """Keep the logged rows up to ``step`` (after a resume or a rollback the log equals that
        of a run that never went past ``step``), the detectors continuing from their
        evaluations, and write them to metrics.jsonl."""
        self.rows = [r for r in rows if r["step"] <= step]
        self.detector, self.monitor = OscillationDetector(), DivergenceMonitor()
        self.runaway = PotentialRunaway()
        for row in self.rows:
            for key in END_OF_RUN_KEYS:  # the earlier end is no longer the end
                row.pop(key, None)
            self.runaway.update(row)
            if "fidelity" in row:
                self.detector.update(row["fidelity"])
                self.monitor.update(row["step"], row["fidelity"])
        if self.run_dir is not None and self.ranks.is_main:
            (self.run_dir / "metrics.jsonl").write_text(
                "".join(json.dumps(r) + "\n" for r in self.rows))

    def _stream_seed(self) -> int:
        """The seed of this rank's random streams from the current step on: from ``(seed,
        rank, step)`` and the number of rollbacks so far (:func:`rank_seed`)."""
        return rank_seed(self.config.seed, self.ranks.rank, self.solver.step, self.rollbacks)

    def _reseed(self) -> None:
        """Under torchrun: restart every rank's stream from :meth:`_stream_seed`."""
        if self.ranks.distributed:
            torch.manual_seed(self._stream_seed())

    def _scale_learning_rates(self) -> None:
        """Both learning rates times ``rollback_lr_factor`` per rollback so far."""
        scale = self.config.rollback_lr_factor ** self.rollbacks
        self.solver.lr_map, self.solver.lr_potential = (lr * scale for lr in self._base_lrs)

    def _training_state(self) -> dict:
        """The solver's training state and the number of rollbacks so far."""
        return {**self.solver.training_state(), "rollbacks": self.rollbacks}

    def save_checkpoint(self, training: dict | None = None) -> None:
        """Write the checkpoint: the result's model and the solver's ``training`` state
        (default: the current one)."""
        if self.run_dir is None or not self.ranks.is_main:
            return
        data = self.result.checkpoint()
        data["training"] = self._training_state() if training is None else training
        data["rng"] = {"torch": torch.get_rng_state(),
                       "cuda": (torch.cuda.get_rng_state(self.device)
                                if self.device.type == "cuda" else None)}
        atomic_save(data, self.checkpoint_path)
        if self.config.keep_checkpoints:
            keep_numbered(self.checkpoint_path, self.solver.step, self.config.keep_checkpoints)

    def _mark_good(self, written: bool) -> None:
        """Remember what a rollback returns to: the checkpoint just ``written``, else an
        in-memory copy of the training state (no run folder; a fresh run's start)."""
        if self.on_divergence == "rollback":
            self._good = None if written else _copy_tree(self._training_state())

    # -- loop ---------------------------------------------------------------------------------
    def batch_sampler(self, sampler: Sampler) -> Callable[[], Tensor]:
        """A function drawing training batches from ``sampler`` as :meth:`run` does, for loops
        that call :meth:`~otmap.core.solver.NeuralOT.train_step` themselves: each call returns
        a fresh ``[batch_size, *shape]`` batch on the trainer's device (image batches in the
        nets' memory format; CPU batches pinned for an asynchronous copy to a GPU)."""
        n, device, fmt = self.config.batch_size, self.device, self.memory_format

        def draw() -> Tensor:
            x = sampler.sample(n)
            if x.dim() == 4:
                x = x.contiguous(memory_format=fmt)
            return to_device_async(x, device)

        return draw

    def _linear_fidelity(self, y_fit: Tensor) -> float | None:
        """:func:`~otmap.train.evaluation.linear_fidelity` where the linear map is a bar the
        map must clear (None for stochastic maps, images and embeddings)."""
        x, y = self.x_eval, self.y_eval
        if (self.result.map.stochastic or x.dim() != 2 or x.shape != y.shape
                or not isinstance(self.solver.embedding, torch.nn.Identity)):
            return None
        return linear_fidelity(x, y, y_fit, self.energy_floor)

    def _inverse_baseline(self) -> tuple[float, float] | None:
        """``(floor, linear)`` for judging ``result.inverse`` at the end, where the linear map
        is a bar (see :meth:`_linear_fidelity`) and the result has an inverse from the potential:
        the energy distance between the held-out source sample and a second one (drawn off the
        training stream, so the run's batches are unchanged), and the fidelity of the linear
        inverse map (Bures, target -> source) on the held-out target sample; else None."""
        if self.linear_fidelity is None or not self.result.invertible:
            return None
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            x_ref = self.source.sample(len(self.x_eval)).to(self.device)
        floor = energy_distance(x_ref, self.x_eval, unbiased=False)
        linear = linear_fidelity(self.y_eval, self.x_eval, x_ref, floor)
        return None if linear is None else (floor, linear)

    def _warn(self, key: str, message: str) -> None:
        """Print and warn once per kind of problem."""
        if key in self._warned:
            return
        self._warned.add(key)
        self._new_warnings.append((key, message))
        tqdm.write(f"otmap: warning: {message}")
        warnings.warn(message, QualityWarning, stacklevel=3)

    def _watch_quality(self, out: dict[str, float]) -> None:
        """Divergence of any map; keeps the best map seen (:meth:`_update_best`)."""
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
        self._update_best(out)

    def _update_best(self, out: dict[str, float]) -> None:
        """Keep the evaluation with the best ``best_metric`` (``auto``: the first of
        :data:`~otmap.train.config.AUTO_BEST_METRICS` the run logs, else ``fidelity``): in
        ``checkpoints/best.pt`` with a run folder, else as CPU copies."""
        spec = self.config.best_metric
        if spec == "auto":
            spec = next((m for m in AUTO_BEST_METRICS if m in out), "fidelity")
        name, goal = metric_goal(spec)
        if name not in out:
            raise InputError(f"train.best_metric={self.config.best_metric!r}: the run's "
                             f"evaluations log no {name!r}; they log {sorted(out)}")
        value, best = float(out[name]), self._best
        if not math.isfinite(value) or (
                best is not None and best["metric"] == name
                and not (value < best["value"] if goal == "min" else value > best["value"])):
            return
        record = {"step": self.solver.step, "metric": name, "value": value,
                  "fidelity": out["fidelity"]}
        potential = _copy_state(self.solver.potential)
        if self.run_dir is None:
            self._best = {**record, "map": _copy_state(self.result.map), "potential": potential}
            return
        data = self.result.checkpoint()
        data["training"] = None
        data["best"] = {**record, "potential": potential}
        atomic_save(data, self.best_path)
        self._best = record

    def _restore_reason(self, last: dict) -> str | None:
        """The metric by which the run's final evaluation ``last`` is clearly worse than the
        best one kept, or None: ``"fidelity"`` (:func:`significantly_worse`), or the best
        metric when it is another (a headline such as ``target_class_share``): under half the
        best of a metric to maximise, over twice the best of one to minimise. A translation
        that reached 86 % in the target class at step 400 and ended at 11 % (mnist-translate,
        750 steps) had its fidelity move only from 7.4 to 9.2."""
        best = self._best
        if best is None or "fidelity" not in last or best["step"] == last["step"]:
            return None
        if significantly_worse(last["fidelity"], best["fidelity"]):
            return "fidelity"
        name = best["metric"]
        if name == "fidelity" or name not in last:
            return None
        value, kept = float(last[name]), best["value"]
        goal = metric_goal(self.config.best_metric if self.config.best_metric != "auto"
                           else name)[1]
        worse = not math.isfinite(value) or (value < kept / 2 if goal == "max"
                                             else value > 2 * kept)
        return name if worse else None

    def _restore_best(self, last: dict, reason: str) -> None:
        """Put the best map kept (best.pt's with a run folder) back into the result (rank 0
        only: training is over)."""
        best = self._best
        assert best is not None
        if self.run_dir is None:
            map_state, potential_state = best["map"], best["potential"]
        else:  # this run's own file: trusted, as it may pickle a custom cost
            data = read_checkpoint(self.best_path, trusted=True)
            map_state, potential_state = data["model"]["map_state"], data["best"]["potential"]
        self.result.map.load_state_dict(map_state)
        self.solver.potential.load_state_dict(potential_state)
        kept = best["fidelity"] if reason == "fidelity" else best["value"]
        message = (f"the run ended with {reason} {last[reason]:.3g}, clearly worse than "
                   f"{kept:.3g} at step {best['step']} (the best {best['metric']}): "
                   f"the map of step {best['step']} is returned (and saved as the run's "
                   f"model); the training state of the last step stays in the checkpoint. "
                   f"{DIVERGENCE_ADVICE}")
        self._warn("restored", message)
        last["restored_step"] = best["step"]

    def _check_returned_map(self, last: dict) -> None:
        """The map a user takes home against the linear OT map between moment-matched
        Gaussians (judged at the end only: mid-run, a map already far more accurate than the
        linear one can still have a worse pushforward, as on the W2 benchmark at D = 64)."""
        if self.linear_fidelity is None or "fidelity" not in last:
            return
        fidelity = (self._best["fidelity"] if "restored_step" in last
                    else last["fidelity"])
        last["worse_than_linear"] = float(
            significantly_worse(fidelity, self.linear_fidelity, factor=1.5, margin=0.25))
        if last["worse_than_linear"]:
            self._warn("worse_than_linear", (
                f"the returned map's pushforward is farther from the target (fidelity "
                f"{fidelity:.3g}) than that of the linear OT map between moment-matched "
                f"Gaussians ({self.linear_fidelity:.3g}): the map has not learned the "
                f"transport. Train longer (steps), raise k_map, or lower the learning rates; "
                f"otmap.benchmarks.BuresMap.fit(x, y) is that linear map (on near-Gaussian "
                f"data it is already the answer: use it)"))
        self._check_returned_inverse(last)

    def _check_returned_inverse(self, last: dict) -> None:
        """``result.inverse`` (from the potential) against the linear inverse map, as the map
        is judged: the amortised map can be sound while the potential is not (the W2
        benchmark's D = 64 pair fitted in reverse: map 34.5 % L2-UVP, inverse 643 %)."""
        if self.inverse_baseline is None or "fidelity" not in last:
            return
        floor, linear = self.inverse_baseline
        back = self.result.inverse(self.y_eval)
        fidelity = energy_distance(back, self.x_eval, unbiased=False) / floor
        last["inverse_fidelity"] = fidelity
        last["inverse_worse_than_linear"] = float(
            significantly_worse(fidelity, linear, *INVERSE_BAR))
        if last["inverse_worse_than_linear"]:
            self._warn("inverse_worse_than_linear", (
                f"result.inverse(y), the inverse map from the potential, pushes the target "
                f"farther from the source (fidelity {fidelity:.3g}) than the linear OT map "
                f"between moment-matched Gaussians ({linear:.3g}): the potential has not "
                f"learned the transport, so do not use inverse() of this run (transport() is "
                f"judged on its own). Train longer (steps), raise k_map, or lower "
                f"lr_potential"))

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Held-out metrics: :func:`~otmap.train.evaluation.held_out_metrics` and the
        evaluator's (e.g. L2-UVP against a known map); then the monitors' verdicts."""
        out = held_out_metrics(self.result, self.solver.embedding, self.x_eval, self.y_eval,
                               self.energy_floor)
        if self.evaluator is not None:
            out.update(self.evaluator(self.result, self.x_eval, self.y_eval))
        if self.result.map.stochastic:  # fake solutions are a weak-cost failure
            if self.detector.update(out["fidelity"]):
                self._warn("oscillating", FAKE_SOLUTION_ADVICE)
            out["oscillating"] = float(self.detector.fired)
        self._watch_quality(out)
        return out

    def run(self) -> TransportResult:
        """Train to ``config.steps``; the result (the best map kept when the run ends clearly
        worse). SIGTERM / SIGINT end it after the current step with a checkpoint and
        :class:`TrainingInterrupted`; non-finite losses raise :class:`TrainingDivergedError`
        unless ``on_divergence="rollback"`` (``auto``: for images) has rollbacks left."""
        cfg, solver = self.config, self.solver
        sample_x, sample_y = self.batch_sampler(self.source), self.batch_sampler(self.target)
        bar = tqdm(total=cfg.steps, initial=solver.step, disable=not self.progress,
                   desc=self.record.get("name", "otmap"), dynamic_ncols=True)
        self._start = time.perf_counter() - (self.rows[-1]["time"] if self.rows else 0.0)
        self._saved_at, self._signal = time.monotonic(), None
        last_good = solver.step
        self._mark_good(written=self.run_dir is not None and self.checkpoint_path.exists())
        training = None  # the last step's training state, once the best map is restored
        with self._catch_signals(), self._closing_on_error():
            while solver.step < cfg.steps:
                stats = solver.train_step(sample_x, sample_y)
                step = solver.step
                final = step == cfg.steps
                log = step % cfg.log_every == 0 or final
                scheduled = step % cfg.checkpoint_every == 0 or final
                stop, timed = self._requests(log or scheduled, final)
                save = scheduled or stop or timed
                if log or save:  # the only host synchronisation: at log and checkpoint steps
                    stats = mean_over_ranks(stats, self.ranks, self.device)
                    row = {"step": step, **{k: float(v) for k, v in stats.items()},
                           "lr_map": solver.map_optimizer.param_groups[0]["lr"]}
                    bad = {k: v for k, v in row.items() if not math.isfinite(v)}
                    if bad:  # raises, or rolls back to last_good
                        self._diverged(step, last_good, bad)
                        bar.n = solver.step
                        bar.refresh()
                        continue
                if log and self.ranks.is_main:
                    if self.runaway.update(row):
                        self._warn("potential_runaway", self.runaway.message(step))
                    if step % cfg.eval_every == 0 or final:
                        row.update(self.evaluate())
                    if final:
                        reason = self._restore_reason(row)
                        if reason:  # keep the last state for exact resume
                            training = _copy_tree(self._training_state())
                            self._restore_best(row, reason)
                        self._check_returned_map(row)
                    row["time"] = time.perf_counter() - self._start
                    self._log(row)
                    bar.set_postfix({k: f"{row[k]:.4g}" for k in
                                     ("loss_map", "cost", "fidelity", "l2_uvp") if k in row})
                if save:
                    self.save_checkpoint(training)
                    last_good, self._saved_at = step, time.monotonic()
                    self._mark_good(written=self.run_dir is not None)
                    if scheduled and not final:  # not after the others: the streams stay
                        self._reseed()           # independent of wall time and signals
                bar.update(1)
                if stop:
                    bar.close()
                    self.result.training = self._training_state()
                    raise self._interrupted(step)
        bar.close()
        self.result.training = training or self._training_state()
        if self.run_dir is not None and self.ranks.is_main:
            self.plot()
        self.close()
        barrier(self.ranks)
        return self.result

    def _log(self, row: dict) -> None:
        """Keep ``row`` and send it to every logger, with the warnings given since the last
        row (tags ``warnings/<kind>``); after an evaluation (a row with ``fidelity``), the live
        pictures (:meth:`_plot_live`)."""
        self.rows.append(row)
        step = row["step"]
        scalars = {k: v for k, v in row.items() if k != "step"}
        for logger in self.loggers:
            logger.log_scalars(step, scalars)
            for key, message in self._new_warnings:
                logger.log_text(step, f"warnings/{key}", message)
        self._new_warnings.clear()
        if "fidelity" in row and self.run_dir is not None:
            self._plot_live(step)

    def close(self) -> None:
        """Close the loggers (:meth:`run` does at its end)."""
        for logger in self.loggers:
            logger.close()

    def _diverged(self, step: int, last_good: int, bad: dict) -> None:
        """Non-finite statistics at ``step``: roll back to ``last_good`` (``on_divergence=
        "rollback"``, at most ``max_rollbacks`` times), else raise
        :class:`TrainingDivergedError`."""
        rollback = self.on_divergence == "rollback"
        if rollback and self.rollbacks < self.config.max_rollbacks:
            self._rollback(step, bad)
            return
        where = (f"the checkpoint of step {last_good} in {self.checkpoint_path} is kept"
                 if self.run_dir is not None and self.checkpoint_path.exists()
                 else "nothing was saved")
        tried = f" after {self.rollbacks} rollback(s) (train.max_rollbacks)" if rollback else ""
        raise TrainingDivergedError(
            f"training diverged at step {step}{tried}: {bad} is not finite; {where}. Lower "
            "lr_map and lr_potential, set grad_clip (e.g. 10), or standardise the data"
        )

    def _rollback(self, step: int, bad: dict) -> None:
        """Reload the last good state, lower both learning rates by ``rollback_lr_factor``,
        reseed the random streams from ``(seed, rank, step, rollbacks)``, write the checkpoint
        (a resume continues the rolled-back run), drop the rows after it and log the rollback
        (a row and a warning)."""
        if self._good is not None:  # a copy: the optimisers would share its tensors
            state = _copy_tree(self._good)
        else:  # this run's own last.pt: trusted, as it may pickle a custom cost
            state = read_checkpoint(self.checkpoint_path, trusted=True)["training"]
        self.solver.load_training_state(state)
        self.rollbacks += 1
        self._scale_learning_rates()
        torch.manual_seed(self._stream_seed())
        good = self.solver.step
        self._keep_rows_until(good, self.rows)
        self.save_checkpoint()
        if not self.ranks.is_main:
            return
        scale = self.config.rollback_lr_factor ** self.rollbacks
        self._log({"step": good, "rollback": float(self.rollbacks), "diverged_step": float(step),
                   "lr_scale": scale, "time": time.perf_counter() - self._start})
        self._warn(f"rollback-{self.rollbacks}", (
            f"training diverged at step {step}: {bad} is not finite; rollback "
            f"{self.rollbacks} of at most {self.config.max_rollbacks} to step {good}, with "
            f"learning rates x{scale:g} and new random streams (train.on_divergence)"))

    @contextlib.contextmanager
    def _closing_on_error(self) -> Iterator[None]:
        """Close the loggers when training raises (divergence, a signal, a bug)."""
        try:
            yield
        except BaseException:
            self.close()
            raise

    @contextlib.contextmanager
    def _catch_signals(self) -> Iterator[None]:
        """While training, SIGTERM and SIGINT set ``_signal``: the run stops after its current
        step (:meth:`_requests`); a second one acts as it would have. Only in the main thread
        and for signals not ignored; the previous handlers come back afterwards."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        caught = [s for s, handler in previous.items() if handler is not signal.SIG_IGN]

        def restore() -> None:
            for s in caught:
                signal.signal(s, signal.SIG_DFL if previous[s] is None else previous[s])

        def handler(signum: int, frame: object) -> None:
            if self._signal is not None:  # the second one: as without otmap
                restore()
                signal.raise_signal(signum)
                return
            self._signal = signum
            if self.ranks.is_main:  # os.write: print() may be mid-write in this thread
                os.write(2, (f"\notmap: {signal.Signals(signum).name}: stopping after the "
                             "current step, with a checkpoint (send it again to stop at "
                             "once)\n").encode())

        for s in caught:
            signal.signal(s, handler)
        try:
            yield
        finally:
            restore()

    def _requests(self, synchronised: bool, final: bool) -> tuple[bool, bool]:
        """``(stop, checkpoint now)``: a caught signal; ``checkpoint_minutes`` of wall time
        since the last checkpoint. Under torchrun they are looked at only on steps that
        synchronise anyway (log and checkpoint steps) and agreed by an all-reduce, so every
        process stops and saves at the same step."""
        minutes = self.config.checkpoint_minutes
        timed = (self.run_dir is not None and minutes is not None
                 and time.monotonic() - self._saved_at >= 60 * minutes)
        stop = self._signal is not None
        if final or not self.ranks.distributed:
            return stop and not final, timed and not final
        if not synchronised:
            return False, False
        flags = {"stop": torch.tensor(float(stop)), "timed": torch.tensor(float(timed))}
        flags = mean_over_ranks(flags, self.ranks, self.device)
        return bool(flags["stop"] > 0), bool(flags["timed"] > 0)

    def _interrupted(self, step: int) -> TrainingInterrupted:
        """The exception that ends a run stopped by a signal, saying how to continue."""
        assert self._signal is not None
        name = signal.Signals(self._signal).name
        if self.run_dir is None:
            where = "nothing was saved (no run folder); the exception's .result is this map"
        else:
            where = (f"checkpoint written to {self.checkpoint_path}; continue with `otmap train "
                     f"--out {self.run_dir} --resume` (otmap.fit: resume=True)")
        return TrainingInterrupted(
            f"training interrupted by {name} at step {step} of {self.config.steps}: {where}",
            self._signal, self.result)

    def _plot_images(self, x: Tensor, folder: Path, name: str) -> Path:
        """``samples.png``: T(x) for noise inputs; for image inputs, rows of inputs and
        outputs (several samples per input for a stochastic map)."""
        if x.dim() != 4:
            return plots.plot_image_grid(self.result.transport(x), folder / "samples.png",
                                         title=plots.run_title(f"{name}: T(x)", self.rows))
        x = x[:8]
        k = 4 if self.result.map.stochastic else 1
        ys = self.result.transport(x, num_samples=k)
        shown = x if x.shape[1:] == ys.shape[2:] else self.solver.embedding(x).cpu()
        rows = torch.cat([shown.unsqueeze(1), ys], dim=1)
        title = f"{name}: input | T(x" + (", z)" if k > 1 else ")")
        return plots.plot_image_grid(rows.flatten(0, 1), folder / "samples.png", nrow=k + 1,
                                     title=plots.run_title(title, self.rows))

    def _write_plots(self, folder: Path) -> list[Path]:
        """Into ``folder``: ``training.png`` (the curves so far), ``samples.png`` for image
        data and ``transport.png`` for 1-D/2-D vector data; the paths written. The titles
        name the monitors' warnings (:func:`plots.run_title`)."""
        name = self.record.get("name", "otmap")
        paths = [plots.plot_training_curves(self.rows, folder / "training.png", title=name)]
        x, y = self.x_eval.cpu(), self.y_eval.cpu()
        if y.dim() == 4:
            paths.append(self._plot_images(x[:64], folder, name))
        if x.dim() != 2 or y.dim() != 2 or x.shape[1] != y.shape[1] or y.shape[1] > 2:
            return paths
        tx, title = self.result.transport(x), plots.run_title(name, self.rows)
        path = folder / "transport.png"
        if y.shape[1] == 1:
            paths.append(plots.plot_transport_1d(x, tx, y, path, title=title))
        elif self.result.map.stochastic:
            txz = self.result.transport(x, num_samples=8)
            paths.append(plots.plot_stochastic_2d(x, txz, y, path, title=title))
        else:
            paths.append(plots.plot_transport_2d(x, tx, y, path, title=title))
        return paths

    def _plot_live(self, step: int) -> None:
        """``plots/latest/*.png`` (:meth:`_write_plots`) after the evaluation at ``step``, sent
        to every logger (tags ``plots/training``, ``plots/samples``, ``plots/transport``) and
        copied to ``plots/step-XXXXXX/`` every ``plot_every`` evaluations. Drawing leaves the
        random streams as they were, so training does not depend on it."""
        assert self.run_dir is not None
        folder = self.run_dir / "plots"
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            paths = self._write_plots(folder / "latest")
        self._drawn = (self.rows[-1], paths)
        for path in paths:
            for logger in self.loggers:
                logger.log_image(step, f"plots/{path.stem}", path)
        if sum("fidelity" in r for r in self.rows) % self.config.plot_every == 0:
            numbered = folder / f"step-{step:06d}"
            numbered.mkdir(exist_ok=True)
            for path in paths:
                shutil.copyfile(path, numbered / path.name)

    def plot(self) -> None:
        """The end-of-run pictures in ``plots/``: copies of ``plots/latest/`` where those show
        the last row (a run's final evaluation), else drawn (:meth:`_write_plots`)."""
        assert self.run_dir is not None
        folder = self.run_dir / "plots"
        if self._drawn is not None and self.rows and self._drawn[0] is self.rows[-1]:
            for path in self._drawn[1]:
                shutil.copyfile(path, folder / path.name)
            return
        self._write_plots(folder)


def _copy_state(module: torch.nn.Module) -> dict[str, Tensor]:
    """A detached CPU copy of ``module``'s state dict."""
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}


def _copy_tree(state: dict) -> dict:
    """A CPU copy of a nested training state (tensors copied, everything else deep-copied)."""
    return {k: (_copy_tree(v) if isinstance(v, dict) else
                v.detach().to("cpu", copy=True) if isinstance(v, Tensor) else copy.deepcopy(v))
            for k, v in state.items()}
