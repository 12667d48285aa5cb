"""``otmap bench speed``: training steps per second and peak memory of otmap's loop against a
plain loop written the way the reference OTM/NOT notebooks are, on the same networks and batches.

Each case is one class of recipe (2-D toy, 64-d vectors, 16x16 images). Per case the plain loop
and otmap's step loop each run in a fresh process (one after the other), so that on a CPU the
process's peak resident memory is that measurement's own; on a GPU peak memory is
``torch.cuda.max_memory_allocated`` over the training steps. The ratio is otmap's steps per
second over the plain loop's, both measured in the same run.

Utilisation: the FLOPs of one training step (torch's ``FlopCounterMode`` over one
``train_step``: its map updates and the potential update, forward and backward; matrix products
and convolutions only) times the steps per second, over the machine's peak FLOP/s on a large
matrix product in the same precision (measured once per run, in a process of its own).
"""

from __future__ import annotations

import dataclasses
import math
import multiprocessing
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from otmap.benchmarks.registry import benchmark_pair
from otmap.core.costs import Cost
from otmap.core.solver import NeuralOT, SampleFn
from otmap.data import Sampler
from otmap.data.specs import sampler_from_spec
from otmap.errors import InputError
from otmap.experiments.config import RunConfig
from otmap.experiments.recipes import load_run_config
from otmap.train.acceleration import synchronize
from otmap.train.config import TrainConfig
from otmap.train.distributed import resolve_device
from otmap.train.fit import Setup, prepare
from otmap.train.trainer import Trainer

#: untimed steps before the timed ones (allocations, Adam state, oneDNN/cuDNN kernel choice)
WARMUP = 10
#: side of the square matrices of the peak FLOP/s measurement, by device type
PEAK_SIZES = {"cpu": 2048, "cuda": 8192}
#: seconds of matrix products per precision in the peak measurement
PEAK_SECONDS = 1.0
#: the dtypes of the precisions a measurement reports
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


@dataclass(frozen=True)
class Case:
    """A recipe class: a built-in recipe, or (``recipe=None``) the ground-truth pair of
    ``otmap bench gaussian --dim 64``; ``steps`` is its default number of timed steps."""

    recipe: str | None
    steps: int
    description: str

    def config(self, device: str) -> RunConfig:
        """The case's run configuration on ``device``."""
        if self.recipe is None:  # as cli's _bench builds it
            return RunConfig(name="bench-gaussian-64",
                             benchmark={"name": "gaussian", "dim": 64, "seed": 0},
                             train=TrainConfig(seed=0, device=device))
        return load_run_config(self.recipe, [f"train.device={device}"])


CASES: dict[str, Case] = {
    "toy": Case("gaussian-8blobs", 800, "2-D Gaussian -> 8 blobs, MLPs of width 512"),
    "vector": Case(None, 600, "Gaussian pair in 64-d, MLPs of width 512"),
    "image": Case("digits-generate", 400, "64-d noise -> 16x16 digits, conv nets"),
    "mnist": Case("otm-mnist-32", 100, "192-d noise -> 32x32 MNIST, paper-scale conv nets "
                                       "(needs the MNIST files)"),
}

#: the cases measured unless ``--cases`` names others (mnist needs data on disk)
DEFAULT_CASES = ("toy", "vector", "image")


def _samplers(config: RunConfig) -> tuple[Sampler, Sampler]:
    """Source and target samplers, built as :func:`otmap.experiments.runner.run` builds them."""
    if config.benchmark is not None:
        spec = dict(config.benchmark)
        pair = benchmark_pair(spec.pop("name"), **spec)
        return pair.source, pair.target
    if config.source is None or config.target is None:
        raise InputError("a speed case needs source and target data specs, or a benchmark")
    return sampler_from_spec(config.source, "source"), sampler_from_spec(config.target, "target")


def _prepare(config: RunConfig, source: object, target: object, **options: object) -> Setup:
    """:func:`otmap.prepare` with the recipe's cost, networks and training options, ``options``
    overriding. The recipe's ``steps`` stay: the learning-rate schedule and
    ``precision="auto"``'s choice (measured for long runs only) are those of its run."""
    train = {**dataclasses.asdict(config.train), **options}
    return prepare(source, target, cost=config.cost, map=config.map,
                   potential=config.potential, **train)


def _device(module: nn.Module) -> torch.device:
    return next(module.parameters()).device


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _peak_mib(device: torch.device) -> float:
    """Peak memory in MiB: CUDA memory allocated since :func:`_reset_peak`, or on a CPU the
    peak resident set size of the whole process (Unix)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    import resource

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024  # bytes on macOS, else KiB


def _checksum(module: nn.Module) -> float:
    """Sum of all parameters (in float64): changes when the module is trained."""
    return float(sum(p.detach().double().sum() for p in module.parameters()))


def _check_counts(steps: int, warmup: int) -> None:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise InputError(f"steps must be a positive integer, got {steps!r}")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise InputError(f"warmup must be a non-negative integer, got {warmup!r}")


def _summary(steps: int, warmup: int, seconds: float, device: torch.device,
             losses: tuple[float, float], changes: tuple[float, float]) -> dict:
    return {"steps": steps, "warmup": warmup, "seconds": round(seconds, 3),
            "steps_per_s": round(steps / seconds, 3), "peak_mib": round(_peak_mib(device), 1),
            "memory": "cuda_max_allocated" if device.type == "cuda" else "process_max_rss",
            "loss_map": losses[0], "loss_potential": losses[1],
            "map_change": changes[0], "potential_change": changes[1]}


def count_step_flops(solver: NeuralOT, sample_source: SampleFn,
                     sample_target: SampleFn) -> int:
    """FLOPs of one ``solver.train_step`` (its ``k_map`` map updates and the potential update,
    forward and backward) as ``FlopCounterMode`` counts them: matrix products and convolutions,
    two per multiply-add, and only the gradients autograd computes; element-wise work and the
    optimiser are not counted. The step is taken: the networks are updated."""
    with FlopCounterMode(display=False) as counter:
        solver.train_step(sample_source, sample_target)
    return counter.get_total_flops()


def peak_flops(device: torch.device, dtype: torch.dtype, seconds: float = PEAK_SECONDS) -> float:
    """The device's FLOP/s on square matrix products in ``dtype`` (side from
    :data:`PEAK_SIZES`): the fastest of groups of products (each group about 20 ms or one
    product) timed over about ``seconds``, after a warm-up product."""
    n = PEAK_SIZES.get(device.type, PEAK_SIZES["cpu"])
    a, b = (torch.randn(n, n, device=device).to(dtype) for _ in range(2))

    def timed(count: int) -> float:
        synchronize(device)
        start = time.perf_counter()
        for _ in range(count):
            torch.mm(a, b)
        synchronize(device)
        return time.perf_counter() - start

    group = max(1, math.ceil(0.02 / timed(1)))
    best, spent = math.inf, 0.0
    while spent < seconds:
        elapsed = timed(group)
        best, spent = min(best, elapsed / group), spent + elapsed
    return 2 * n**3 / best


def peak_gflops(device: str, precisions: list[str]) -> dict[str, float]:
    """:func:`peak_flops` in GFLOP/s (1 decimal) for each of ``precisions`` (``fp32``,
    ``bf16``)."""
    return {name: round(peak_flops(torch.device(device), DTYPES[name]) / 1e9, 1)
            for name in precisions}


def measure_ours(config: RunConfig, steps: int, warmup: int) -> dict:
    """otmap's training loop: the trainer's batch functions and ``NeuralOT.train_step``, with
    the statistics read on the host only every ``log_every`` steps (and at the last step), as
    :meth:`Trainer.run` does, without its evaluations.

    Returns steps, warmup, seconds, steps_per_s, peak_mib, memory (what peak_mib measures),
    the last step's losses, the change of each network's parameter sum, the precision (with
    ``precision_seconds`` and ``precision_speedup``, the timings of ``precision="auto"``'s
    choice, or None),
    channels_last and ``flops_per_step`` (:func:`count_step_flops`, on one more step after the
    timed ones). Runs in the calling process: on a CPU peak_mib is the process's peak so far.
    """
    _check_counts(steps, warmup)
    source, target = _samplers(config)
    setup = _prepare(config, source, target)
    trainer = Trainer(setup.solver, setup.source, setup.target, setup.config, setup.result,
                      run_dir=None, record=setup.record, progress=False, ranks=setup.ranks,
                      channels_last=setup.channels_last)
    solver, log_every = setup.solver, setup.config.log_every
    device = _device(solver.map)
    sample_x, sample_y = trainer.batch_sampler(setup.source), trainer.batch_sampler(setup.target)
    before = _checksum(solver.map), _checksum(solver.potential)
    torch.manual_seed(setup.config.seed)  # the plain loop draws the same batches
    _reset_peak(device)
    for _ in range(warmup):
        solver.train_step(sample_x, sample_y)
    synchronize(device)
    start = time.perf_counter()
    for i in range(steps):
        stats = solver.train_step(sample_x, sample_y)
        if solver.step % log_every == 0 or i == steps - 1:
            row = {k: float(v) for k, v in stats.items()}
    synchronize(device)
    seconds = time.perf_counter() - start
    changes = (abs(_checksum(solver.map) - before[0]),
               abs(_checksum(solver.potential) - before[1]))
    summary = _summary(steps, warmup, seconds, device,
                       (row["loss_map"], row["loss_potential"]), changes)
    return {**summary, "precision": setup.precision.precision,
            "precision_seconds": setup.precision.seconds_per_step,
            "precision_speedup": setup.precision.speedup,
            "channels_last": setup.channels_last,
            "flops_per_step": count_step_flops(solver, sample_x, sample_y)}


def _requires_grad(module: nn.Module, flag: bool) -> None:
    """The reference code's ``freeze``/``unfreeze``."""
    for p in module.parameters():
        p.requires_grad_(flag)


def _gradient_optimality(cost: Cost, qx: Tensor, t_x: Tensor, f_tx: Tensor) -> Tensor:
    """OTM's gradient-optimality term in the library's form (the same work as otmap's)."""
    grad_f = torch.autograd.grad(f_tx.sum(), t_x, create_graph=True)[0]
    y = t_x.detach().requires_grad_(True)
    grad_c = torch.autograd.grad(cost(qx, y.unsqueeze(1)).sum(), y)[0]
    return (grad_f.mean(0) - grad_c.mean(0)).norm()


def measure_plain(config: RunConfig, steps: int, warmup: int) -> dict:
    """The reference-style loop on the same (freshly built, same seed) networks: its own Adam
    optimisers, freeze/unfreeze by ``requires_grad`` each step, batches moved with ``.to`` each
    draw, contiguous NCHW float32, no compile, no EMA, two potential calls in the potential
    step and both losses read with ``.item()`` at every step.

    Returns what :func:`measure_ours` returns, plus ``logged``: the number of logged steps
    (warmup and timed).
    """
    _check_counts(steps, warmup)
    unsupported = [name for name in ("gradient_penalty", "grad_clip", "weight_decay",
                                     "potential_all_samples") if getattr(config.train, name)]
    if unsupported:
        raise InputError(f"the plain loop does not implement train.{', train.'.join(unsupported)}")
    source, target = _samplers(config)
    # callables, so that prepare leaves in-memory data sets on the CPU as the reference does
    setup = _prepare(config, source.sample, target.sample,
                     channels_last=False, precision="fp32", compile=False, ema_decay=None)
    solver, train = setup.solver, setup.config
    t, f, cost, q = solver.map, solver.potential, solver.cost, solver.embedding
    k_map, k, n, go = solver.k_map, solver.num_samples, train.batch_size, train.gradient_optimality
    device = _device(t)
    t_opt = torch.optim.Adam(t.parameters(), lr=solver.lr_map, betas=train.betas)
    f_opt = torch.optim.Adam(f.parameters(), lr=solver.lr_potential, betas=train.betas)
    map_losses: list[float] = []
    potential_losses: list[float] = []

    def step() -> None:
        _requires_grad(t, True)
        _requires_grad(f, False)
        for _ in range(k_map):
            x = source.sample(n).to(device)
            t_x = t.sample(x, k)
            t_loss = cost(q(x), t_x).mean() - f(t_x.flatten(0, 1)).mean()
            t_opt.zero_grad()
            t_loss.backward()
            t_opt.step()
        _requires_grad(t, False)
        _requires_grad(f, True)
        x, y = source.sample(n).to(device), target.sample(n).to(device)
        with torch.no_grad():
            t_x = t.sample(x, 1).flatten(0, 1)
        f_tx = f(t_x.requires_grad_(bool(go)))
        f_loss = f_tx.mean() - f(y).mean()
        if go:
            f_loss = f_loss + go * _gradient_optimality(cost, q(x), t_x, f_tx)
        f_opt.zero_grad()
        f_loss.backward()
        f_opt.step()
        map_losses.append(t_loss.item())
        potential_losses.append(f_loss.item())

    before = _checksum(t), _checksum(f)
    torch.manual_seed(train.seed)  # otmap's loop draws the same batches
    _reset_peak(device)
    for _ in range(warmup):
        step()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(device)
    seconds = time.perf_counter() - start
    changes = abs(_checksum(t) - before[0]), abs(_checksum(f) - before[1])
    return {**_summary(steps, warmup, seconds, device,
                       (map_losses[-1], potential_losses[-1]), changes),
            "logged": len(potential_losses)}


def _in_child(threads: int, function: Callable[..., dict], *args: object) -> dict:
    torch.set_num_threads(threads)
    return function(*args)


def _isolated(threads: int, function: Callable[..., dict], *args: object) -> dict:
    """``function(*args)`` in a fresh (spawned) process with ``threads`` intra-op threads;
    returns its result and re-raises its errors."""
    context = multiprocessing.get_context("spawn")
    with context.Pool(1, maxtasksperchild=1) as pool:
        return pool.apply(_in_child, (threads, function, *args))


def _add_utilisation(loop: dict, flops: int, peak: float) -> None:
    """``achieved_gflops`` (``flops`` per step times the loop's steps per second) and
    ``utilisation`` (over ``peak`` GFLOP/s) into a loop's result."""
    achieved = flops * loop["steps_per_s"] / 1e9
    loop.update(achieved_gflops=round(achieved, 3), utilisation=round(achieved / peak, 4))


def speed_bench(cases: list[str], steps: int | None = None, device: str = "auto",
                threads: int | None = None, *, warmup: int = WARMUP,
                progress: bool = False) -> dict:
    """Measure the plain loop, then otmap's, for each case, each in its own process; then the
    peak FLOP/s (:func:`peak_flops`) in float32 and in each precision otmap's loop ran, in a
    process of its own.

    Args:
        cases: names in :data:`CASES`.
        steps: timed steps per measurement (None: each case's default).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``...
        threads: torch intra-op threads of the measuring processes (None: this process's).
        warmup: untimed steps before the timed ones.
        progress: say on stderr what is being measured.

    Returns:
        ``{"device", "threads", "torch", "peak_gflops": {precision: GFLOP/s}, <case>:
        {"flops_per_step", "ours": {...}, "plain": {...}}, <case>_ratio: ours steps/s over
        plain steps/s (3 decimals), <case>_utilisation: ours achieved FLOP/s over the peak in
        its precision (4 decimals), ...}``; each loop's result has ``achieved_gflops``
        (flops_per_step times its steps/s) and ``utilisation`` (the plain loop's against the
        float32 peak).
    """
    unknown = [name for name in cases if name not in CASES]
    if unknown or not cases:
        raise InputError(f"unknown speed case(s) {unknown}; choose from {sorted(CASES)}")
    if steps is not None:
        _check_counts(steps, warmup)
    if threads is not None and threads < 1:
        raise InputError(f"threads must be at least 1, got {threads}")
    device = str(resolve_device(device))
    threads = threads or torch.get_num_threads()
    out: dict = {"device": device, "threads": threads, "torch": torch.__version__}
    for name in cases:
        case = CASES[name]
        config, n = case.config(device), steps or case.steps
        measured = {}
        for label, measure in (("plain", measure_plain), ("ours", measure_ours)):
            if progress:
                print(f"otmap: speed {name} ({case.description}): {label} loop, "
                      f"{warmup} + {n} steps", file=sys.stderr, flush=True)
            measured[label] = _isolated(threads, measure, config, n, warmup)
        out[name] = {"flops_per_step": measured["ours"].pop("flops_per_step"),
                     "ours": measured["ours"], "plain": measured["plain"]}
        out[f"{name}_ratio"] = round(measured["ours"]["steps_per_s"]
                                     / measured["plain"]["steps_per_s"], 3)
    precisions = sorted({"fp32", *(out[name]["ours"]["precision"] for name in cases)})
    if progress:
        print(f"otmap: speed: peak FLOP/s of matrix products in {', '.join(precisions)}",
              file=sys.stderr, flush=True)
    out["peak_gflops"] = _isolated(threads, peak_gflops, device, precisions)
    for name in cases:
        case, flops = out[name], out[name]["flops_per_step"]
        _add_utilisation(case["ours"], flops, out["peak_gflops"][case["ours"]["precision"]])
        _add_utilisation(case["plain"], flops, out["peak_gflops"]["fp32"])
        out[f"{name}_utilisation"] = case["ours"]["utilisation"]
    return out


def format_table(result: dict) -> str:
    """The measured cases of a :func:`speed_bench` result as a text table."""
    rows = [("case", "ours steps/s", "plain steps/s", "ratio", "ours MiB", "plain MiB",
             "GFLOP/step", "ours GFLOP/s", "ours util", "plain util")]
    for name in CASES:
        if name in result:
            ours, plain = result[name]["ours"], result[name]["plain"]
            rows.append((name, f"{ours['steps_per_s']:.2f}", f"{plain['steps_per_s']:.2f}",
                         f"{result[f'{name}_ratio']:.3f}", f"{ours['peak_mib']:.0f}",
                         f"{plain['peak_mib']:.0f}", f"{result[name]['flops_per_step'] / 1e9:.3g}",
                         f"{ours['achieved_gflops']:.3g}", f"{ours['utilisation']:.1%}",
                         f"{plain['utilisation']:.1%}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.rjust(w) if i else cell.ljust(w)
                       for i, (cell, w) in enumerate(zip(row, widths))) for row in rows]
    peaks = ", ".join(f"{k} {v:.4g}" for k, v in result["peak_gflops"].items())
    return "\n".join(lines) + (
        f"\n(device {result['device']}, {result['threads']} threads; ratio = ours / plain steps "
        f"per second; util = achieved FLOP/s over the peak in the loop's precision: {peaks} "
        "GFLOP/s on square matrix products; ours ran in "
        + ", ".join(f"{name} {result[name]['ours']['precision']}" for name in CASES
                    if name in result) + ")")
