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

Precision: otmap's loop runs in each precision asked for (``train.precision``: ``auto``, the
default, ``fp32`` or ``bf16``), the plain loop always in float32, as the reference notebooks.
Profile (optional): torch.profiler over a few more of otmap's steps names the operators that
take the most self CPU time, with their share of the step.
"""

from __future__ import annotations

import dataclasses
import math
import multiprocessing
import sys
import time
from collections.abc import Callable, Sequence
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
from otmap.train.acceleration import PRECISIONS, synchronize
from otmap.train.config import TrainConfig
from otmap.train.distributed import resolve_device
from otmap.train.fit import Setup, prepare
from otmap.train.trainer import Trainer
from otmap.utils.checks import check_int

#: untimed steps before the timed ones (allocations, Adam state, oneDNN/cuDNN kernel choice)
WARMUP = 10
#: side of the square matrices of the peak FLOP/s measurement, by device type
PEAK_SIZES = {"cpu": 2048, "cuda": 8192}
#: seconds of matrix products per precision in the peak measurement
PEAK_SECONDS = 1.0
#: the dtypes of the precisions a measurement reports
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
#: otmap steps profiled per measurement of otmap's loop with ``--profile`` and no count
PROFILE_STEPS = 5
#: operators a profile lists
PROFILE_TOP = 8


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
    "toy": Case("gaussian-8blobs", 800, "2-D Gaussian -> 8 blobs, MLPs of width 128"),
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


def _check_counts(steps: int, warmup: int, profile_steps: int = 0) -> None:
    """:class:`InputError` unless the step counts of one measurement are integers in range."""
    check_int("steps", steps, 1)
    check_int("warmup", warmup, 0)
    check_int("profile steps", profile_steps, 0)


def _check_precisions(precisions: Sequence[str]) -> list[str]:
    """The precisions asked for otmap's loop, as a list; :class:`InputError` for an unknown
    or repeated name, or none."""
    names = [precisions] if isinstance(precisions, str) else list(precisions)
    unknown = [name for name in names if name not in PRECISIONS]
    if unknown or not names:
        raise InputError(f"unknown precision(s) {unknown} for otmap's loop; choose from "
                         f"{list(PRECISIONS)}, one or a comma list such as fp32,auto")
    if len(set(names)) < len(names):
        raise InputError(f"precisions {names} name one twice; name each once")
    return names


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


def profile_steps(solver: NeuralOT, sample_source: SampleFn, sample_target: SampleFn,
                  steps: int, top: int = PROFILE_TOP) -> dict:
    """torch.profiler (CPU activity) over ``steps`` more ``solver.train_step`` calls (the
    networks are updated): the ``top`` operators by self CPU time.

    Returns ``{"steps", "ms_per_step": wall time per profiled step (the profiler's overhead
    included), "ops": [{"op", "self_ms": its self CPU time per step, "share"}, ...]}``, the
    largest first. ``share`` is the
    operator's self time over the profiled steps' wall time, or over all operators' self time
    where that is larger (threads that overlap), so shares lie in (0, 1] and sum to at most 1;
    the rest is Python and time outside any operator."""
    device = _device(solver.map)
    synchronize(device)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as recorded:
        start = time.perf_counter()
        for _ in range(steps):
            solver.train_step(sample_source, sample_target)
        synchronize(device)
        wall = time.perf_counter() - start
    events = sorted((e for e in recorded.key_averages() if e.self_cpu_time_total > 0),
                    key=lambda e: e.self_cpu_time_total, reverse=True)
    total = max(wall, sum(e.self_cpu_time_total for e in events) / 1e6)
    ops = [{"op": e.key, "self_ms": round(e.self_cpu_time_total / 1e3 / steps, 3),
            "share": float(f"{e.self_cpu_time_total / 1e6 / total:.4g}")} for e in events[:top]]
    return {"steps": steps, "ms_per_step": round(1e3 * wall / steps, 3), "ops": ops}


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


def measure_ours(config: RunConfig, steps: int, warmup: int, profile: int = 0) -> dict:
    """otmap's training loop: the trainer's batch functions and ``NeuralOT.train_step``, with
    the statistics read on the host only every ``log_every`` steps (and at the last step), as
    :meth:`Trainer.run` does, without its evaluations, in ``config.train.precision``.

    Returns steps, warmup, seconds, steps_per_s, peak_mib, memory (what peak_mib measures),
    the last step's losses, the change of each network's parameter sum, the precision (with
    ``precision_seconds`` and ``precision_speedup``, the timings of ``precision="auto"``'s
    choice, or None),
    channels_last and ``flops_per_step`` (:func:`count_step_flops`, on one more step after the
    timed ones); with ``profile`` steps, also ``profile`` (:func:`profile_steps` on that many
    more steps). Runs in the calling process: on a CPU peak_mib is the process's peak so far
    (read before the counted and profiled steps).
    """
    _check_counts(steps, warmup, profile)
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
    result = {**summary, "precision": setup.precision.precision,
              "precision_seconds": setup.precision.seconds_per_step,
              "precision_speedup": setup.precision.speedup,
              "channels_last": setup.channels_last,
              "flops_per_step": count_step_flops(solver, sample_x, sample_y)}
    if profile:
        result["profile"] = profile_steps(solver, sample_x, sample_y, profile)
    return result


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

    Returns what :func:`measure_ours` returns but its precision details (``precision`` is
    ``"fp32"``), channels_last and flops_per_step, plus ``logged``: the number of logged steps
    (warmup and timed).
    """
    _check_counts(steps, warmup)
    unsupported = [name for name in ("gradient_penalty", "expectile", "grad_clip", "weight_decay",
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
            "precision": "fp32", "logged": len(potential_losses)}


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


def _suffix(precision: str, precisions: list[str]) -> str:
    """The key suffix of otmap's loop in ``precision``: none when one precision is measured,
    else ``_<precision>`` (``ours_fp32``, ``image_ratio_fp32``...)."""
    return f"_{precision}" if len(precisions) > 1 else ""


def _say(progress: bool, message: str) -> None:
    if progress:
        print(f"otmap: speed {message}", file=sys.stderr, flush=True)


def speed_bench(cases: list[str], steps: int | None = None, device: str = "auto",
                threads: int | None = None, *, precisions: Sequence[str] = ("auto",),
                warmup: int = WARMUP, profile: int = 0, progress: bool = False) -> dict:
    """Measure the plain loop, then otmap's in each of ``precisions``, for each case, each in
    its own process; then the peak FLOP/s (:func:`peak_flops`) in float32 and in each
    precision otmap's loop ran, in a process of its own.

    Args:
        cases: names in :data:`CASES`.
        steps: timed steps per measurement (None: each case's default).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``...
        threads: torch intra-op threads of the measuring processes (None: this process's).
        precisions: ``train.precision`` of otmap's loop (``auto``, ``fp32``, ``bf16``), one
            measurement each; the plain loop runs in float32.
        warmup: untimed steps before the timed ones.
        profile: profile this many more steps of otmap's loop (:func:`profile_steps`; 0: none).
        progress: say on stderr what is being measured.

    Returns:
        ``{"device", "threads", "torch", "precisions": the precisions asked, "peak_gflops":
        {precision: GFLOP/s}, <case>: {"flops_per_step", "ours": {...}, "plain": {...}},
        <case>_ratio: ours steps/s over plain steps/s (3 decimals), <case>_utilisation: ours
        achieved FLOP/s over the peak in its precision (4 decimals), ...}``; each loop's result
        has ``precision`` (the one it ran in), ``achieved_gflops`` (flops_per_step times its
        steps/s) and ``utilisation`` (the plain loop's against the float32 peak). With several
        precisions, otmap's loop's keys carry the precision asked: ``ours_fp32``,
        ``<case>_ratio_fp32``, ``<case>_utilisation_fp32``... (``flops_per_step`` is one per
        case: it counts shapes, whatever the dtype).
    """
    unknown = [name for name in cases if name not in CASES]
    if unknown or not cases:
        raise InputError(f"unknown speed case(s) {unknown}; choose from {sorted(CASES)}")
    precisions = _check_precisions(precisions)
    if steps is not None:
        check_int("steps", steps, 1)
    check_int("warmup", warmup, 0)
    check_int("profile steps", profile, 0)
    if threads is not None and threads < 1:
        raise InputError(f"threads must be at least 1, got {threads}")
    device = str(resolve_device(device))
    threads = threads or torch.get_num_threads()
    out: dict = {"device": device, "threads": threads, "torch": torch.__version__,
                 "precisions": precisions}
    ran = {"fp32"}
    for name in cases:
        case = CASES[name]
        config, n = case.config(device), steps or case.steps
        _say(progress, f"{name} ({case.description}): plain loop, fp32, {warmup} + {n} steps")
        entry = out[name] = {"plain": _isolated(threads, measure_plain, config, n, warmup)}
        for precision in precisions:
            _say(progress, f"{name} ({case.description}): ours loop, precision {precision}, "
                           f"{warmup} + {n} steps" + (f" + {profile} profiled" if profile else ""))
            train = dataclasses.replace(config.train, precision=precision)
            ours = _isolated(threads, measure_ours, dataclasses.replace(config, train=train), n,
                             warmup, profile)
            entry["flops_per_step"] = ours.pop("flops_per_step")
            entry[f"ours{_suffix(precision, precisions)}"] = ours
            out[f"{name}_ratio{_suffix(precision, precisions)}"] = round(
                ours["steps_per_s"] / entry["plain"]["steps_per_s"], 3)
            ran.add(ours["precision"])
    _say(progress, f"peak FLOP/s of matrix products in {', '.join(sorted(ran))}")
    out["peak_gflops"] = _isolated(threads, peak_gflops, device, sorted(ran))
    for name in cases:
        entry, flops = out[name], out[name]["flops_per_step"]
        _add_utilisation(entry["plain"], flops, out["peak_gflops"]["fp32"])
        for precision in precisions:
            ours = entry[f"ours{_suffix(precision, precisions)}"]
            _add_utilisation(ours, flops, out["peak_gflops"][ours["precision"]])
            out[f"{name}_utilisation{_suffix(precision, precisions)}"] = ours["utilisation"]
    return out


def _measured(result: dict) -> list[tuple[str, str, str]]:
    """``(case, label, key suffix)`` for each measurement of otmap's loop in a
    :func:`speed_bench` result; the label names the precision asked when there were several."""
    precisions = result["precisions"]
    return [(name, name + (f" {precision}" if len(precisions) > 1 else ""),
             _suffix(precision, precisions))
            for name in CASES if name in result for precision in precisions]


def format_table(result: dict) -> str:
    """The measured cases of a :func:`speed_bench` result as a text table."""
    rows = [("case", "ours steps/s", "plain steps/s", "ratio", "ours MiB", "plain MiB",
             "GFLOP/step", "ours GFLOP/s", "ours util", "plain util")]
    for name, label, suffix in _measured(result):
        ours, plain = result[name][f"ours{suffix}"], result[name]["plain"]
        rows.append((label, f"{ours['steps_per_s']:.2f}", f"{plain['steps_per_s']:.2f}",
                     f"{result[f'{name}_ratio{suffix}']:.3f}",
                     f"{ours['peak_mib']:.0f}", f"{plain['peak_mib']:.0f}",
                     f"{result[name]['flops_per_step'] / 1e9:.3g}",
                     f"{ours['achieved_gflops']:.3g}", f"{ours['utilisation']:.1%}",
                     f"{plain['utilisation']:.1%}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.rjust(w) if i else cell.ljust(w)
                       for i, (cell, w) in enumerate(zip(row, widths))) for row in rows]
    peaks = ", ".join(f"{k} {v:.4g}" for k, v in result["peak_gflops"].items())
    return "\n".join(lines) + (
        f"\n(device {result['device']}, {result['threads']} threads; ratio = ours / plain steps "
        f"per second; util = achieved FLOP/s over the peak in the loop's precision: {peaks} "
        "GFLOP/s on square matrix products; plain ran in fp32, ours in "
        + ", ".join(f"{label}: {result[name][f'ours{suffix}']['precision']}"
                    for name, label, suffix in _measured(result))
        + ")")


def format_profile(result: dict) -> str:
    """The profiles of otmap's loop in a :func:`speed_bench` result (``""`` if none): per
    measurement, its operators by self CPU time with their share of the step."""
    blocks = []
    for name, label, suffix in _measured(result):
        ours = result[name][f"ours{suffix}"]
        if "profile" in ours:
            prof = ours["profile"]
            blocks.append(f"profile of ours, {label} ({ours['precision']}, {prof['steps']} "
                          f"steps, {prof['ms_per_step']:.3g} ms/step wall), self CPU time:\n"
                          + "\n".join(f"  {op['share']:6.1%}  {op['self_ms']:8.3f} ms  "
                                      f"{op['op']}" for op in prof["ops"]))
    return "\n".join(blocks)
