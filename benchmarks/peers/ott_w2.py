"""Time-to-quality of OTT-JAX's W2NeuralDual (ICNN dual solver) on an otmap benchmark pair.

Runs in the OTT virtual env made by ``setup_ott.sh`` (numpy + jax + ott-jax; no torch, no
otmap), on an .npz written by ``export_pair.py`` in otmap's env:

    OMP_NUM_THREADS=1 XLA_FLAGS=--xla_cpu_multi_thread_eigen=false taskset -c 1 \
        /tmp/ott-venv/bin/python benchmarks/peers/ott_w2.py /tmp/otmap-peer-gaussian-16.npz \
        --budget-s 600 --eval-every 100 --target 1,0.5 --out /tmp/ott-gaussian-16.json

Solver (defaults follow OTT's neural-dual tutorial, ``docs/tutorials/neural/000_neural_dual``):
f = ``ICNN(dim_hidden=[64]*4)`` with positive weights, initialised from one source and one
target batch (``gaussian_map_samples``: its quadratic term starts as that batch's Gaussian
map; at D = 16 the positive-weight hidden layers swamp it, see README.md);
g = ``PotentialMLP(dim_hidden=[64]*4, is_potential=False)`` (an amortised gradient map for the
conjugate, fine-tuned by OTT's default L-BFGS conjugate solver, 20 iterations); Adam for f with
betas (0.5, 0.5), for g (0.9, 0.999), both with a cosine decay from 1e-3 to 1e-5 over ``--iters``
(5001); one g update per f update, done in parallel (W2NeuralDual's ``parallel_updates``);
batch 2048 (the tutorial's sampler default) of each measure, drawn with replacement from the
file's training pool.

Training is W2NeuralDual's own loop (``solver(...)``); the evaluation runs in its per-step
callback: every ``--eval-every`` iterations the forward map of the current potentials is applied
to the file's fixed x_test and scored against T*(x_test):
L2-UVP = 100 * mean_i |T(x_i) - T*(x_i)|^2 / Var(nu), Var(nu) = the pair's target_variance.
The forward map is grad f (W2NeuralDual's docstring: "grad f transports source to target", the
source being the first loader, here x_train). Times are of training only: the clock stops during
each evaluation (after waiting for the queued jax work), like a stopwatch paused around it;
``--budget-s`` is a training-time budget. The first iterations include jax's compilation.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from importlib import metadata

import numpy as np

TUTORIAL = {"hidden": 64, "layers": 4, "lr": 1e-3, "lr_final_factor": 1e-2, "iters": 5001,
            "batch_size": 2048}


class BudgetSpent(Exception):
    """Raised from the callback to end W2NeuralDual's loop when the time budget is used."""


def _targets(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or not all(math.isfinite(v) and v >= 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected L2-UVP values in %, e.g. 1,0.5; got {text!r}")
    return values


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _versions() -> dict:
    out = {"python": platform.python_version()}
    for name in ("ott-jax", "jax", "jaxlib", "flax", "optax", "numpy"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def l2_uvp(predicted: np.ndarray, truth: np.ndarray, variance: float) -> float:
    """100 * mean_i |p_i - t_i|^2 / variance, in float64 (otmap.metrics.vectors.l2_uvp)."""
    diff = np.asarray(predicted, np.float64) - np.asarray(truth, np.float64)
    return float(100.0 * (diff**2).sum(axis=1).mean() / variance)


def cos(x: np.ndarray, predicted: np.ndarray, truth: np.ndarray) -> float:
    """Cosine of the displacements from x (otmap.metrics.vectors.cos)."""
    x = np.asarray(x, np.float64)
    dp, dt = np.asarray(predicted, np.float64) - x, np.asarray(truth, np.float64) - x
    denominator = math.sqrt((dt**2).sum(1).mean() * (dp**2).sum(1).mean())
    return 0.0 if denominator == 0.0 else float((dp * dt).sum(1).mean() / denominator)


def _batches(pool: np.ndarray, batch_size: int, rng: np.random.Generator):
    """Endless minibatches of ``pool`` rows, drawn with replacement."""
    while True:
        yield pool[rng.integers(0, len(pool), size=batch_size)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("npz", help="a pair file written by export_pair.py")
    parser.add_argument("--iters", type=int, default=TUTORIAL["iters"],
                        help="W2NeuralDual's num_train_iters (the lr schedule's length; "
                             "default 5001, the tutorial's)")
    parser.add_argument("--batch-size", type=int, default=TUTORIAL["batch_size"])
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0,
                        help="seeds the networks' init (jax) and the minibatch draws (numpy)")
    parser.add_argument("--budget-s", type=float, default=None,
                        help="stop once this many seconds of training (evaluation excluded) "
                             "have passed")
    parser.add_argument("--target", type=_targets, action="append", default=[],
                        metavar="X[,X...]", help="report seconds_to_target for L2-UVP <= X %%")
    parser.add_argument("--hidden", type=int, default=TUTORIAL["hidden"])
    parser.add_argument("--layers", type=int, default=TUTORIAL["layers"])
    parser.add_argument("--lr", type=float, default=TUTORIAL["lr"])
    parser.add_argument("--inner-iters", type=int, default=1,
                        help="g updates per f update (>1: W2NeuralDual's alternating loop)")
    parser.add_argument("--g", choices=("mlp", "icnn"), default="mlp",
                        help="g: PotentialMLP gradient map (tutorial) or a second ICNN")
    parser.add_argument("--init", choices=("gaussian", "identity"), default="gaussian",
                        help="ICNN init: the Gaussian map of one batch (tutorial) or 1/2|x|^2")
    parser.add_argument("--pos-weights", choices=("true", "false"), default="true",
                        help="W2NeuralDual's pos_weights (default true, its default: the ICNN's "
                             "z-weights are rectified; false: clipped after each step and "
                             "penalised with beta=1)")
    parser.add_argument("--out", default=None, help="also write the JSON here")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)

    import jax
    import jax.numpy as jnp
    import optax
    from ott.neural.methods import neuraldual
    from ott.neural.networks import icnn, potentials

    data = np.load(args.npz)
    meta = json.loads(str(data["meta"]))
    x_train, y_train = data["x_train"], data["y_train"]
    x_test, tx_test = data["x_test"], data["tx_test"]
    variance = float(data["target_variance"])
    dim = x_train.shape[1]
    targets = [x for values in args.target for x in values]

    # the formula check: identity map's L2-UVP here vs otmap's l2_uvp in export_pair.py
    identity = l2_uvp(x_test, tx_test, variance)
    reference = meta["reference_on_x_test"]["identity_l2_uvp"]
    if abs(identity - reference) > 1e-6 * max(1.0, reference):
        raise SystemExit(f"L2-UVP formula mismatch: {identity} here, {reference} in otmap")

    rng = np.random.default_rng(args.seed)
    source_batches = _batches(x_train, args.batch_size, rng)
    target_batches = _batches(y_train, args.batch_size, rng)
    hidden = [args.hidden] * args.layers
    positive = args.pos_weights == "true"
    init = None
    if args.init == "gaussian":
        init = (jnp.asarray(next(source_batches)), jnp.asarray(next(target_batches)))
    neural_f = icnn.ICNN(dim_data=dim, dim_hidden=hidden, pos_weights=positive,
                         gaussian_map_samples=init)
    if args.g == "mlp":
        neural_g = potentials.PotentialMLP(dim_hidden=hidden, is_potential=False)
    else:
        neural_g = icnn.ICNN(dim_data=dim, dim_hidden=hidden, pos_weights=positive,
                             gaussian_map_samples=None if init is None else init[::-1])
    schedule = optax.cosine_decay_schedule(init_value=args.lr, decay_steps=args.iters,
                                           alpha=TUTORIAL["lr_final_factor"])
    optimizer_f = optax.adam(learning_rate=schedule, b1=0.5, b2=0.5)
    optimizer_g = optax.adam(learning_rate=schedule, b1=0.9, b2=0.999)
    solver = neuraldual.W2NeuralDual(
        dim, neural_f, neural_g, optimizer_f, optimizer_g, num_train_iters=args.iters,
        num_inner_iters=args.inner_iters, parallel_updates=args.inner_iters == 1,
        valid_freq=args.iters + 1,  # its validation loss is not training: never run it
        log_freq=args.iters + 1, rng=jax.random.key(args.seed), pos_weights=positive)

    @jax.jit
    def forward_map(params, x):
        """grad f(x) for x [n, dim]: the learned source -> target map."""
        return jax.vmap(jax.grad(solver.state_f.potential_value_fn(params)))(x)

    x_test_j = jnp.asarray(x_test)
    curve: list[dict] = []
    clock = {"train": 0.0, "since": 0.0, "eval": 0.0, "first_step": None}
    wall_start = time.perf_counter()

    def evaluate(iteration: int) -> None:
        """Score the current f on x_test; the training clock is paused meanwhile."""
        jax.block_until_ready(solver.state_f.params)
        now = time.perf_counter()
        if iteration > 0:
            clock["train"] += now - clock["since"]
        predicted = np.asarray(forward_map(solver.state_f.params, x_test_j))
        row = {"seconds": round(clock["train"], 3), "iteration": iteration,
               "l2_uvp": l2_uvp(predicted, tx_test, variance),
               "cos": cos(x_test, predicted, tx_test),
               "wall_seconds": round(now - wall_start, 3)}
        if not all(map(math.isfinite, (row["l2_uvp"], row["cos"]))):
            row["l2_uvp"] = row["cos"] = float("nan")
        curve.append(row)
        if not args.quiet:
            print(f"iter {iteration:6d}  train {row['seconds']:8.2f} s  "
                  f"L2-UVP {row['l2_uvp']:9.4f} %  cos {row['cos']:.5f}", file=sys.stderr,
                  flush=True)
        clock["eval"] += time.perf_counter() - now
        clock["since"] = time.perf_counter()

    def callback(step: int, _potentials) -> None:
        iteration = step + 1  # the callback runs after update ``step`` (0-based)
        if iteration == 1:
            jax.block_until_ready(solver.state_f.params)
            clock["first_step"] = time.perf_counter() - clock["since"]
        if iteration % args.eval_every == 0 or iteration == args.iters:
            evaluate(iteration)
        elif args.budget_s is not None:  # wait for the step, so that the check is exact
            jax.block_until_ready(solver.state_f.params)
            if clock["train"] + time.perf_counter() - clock["since"] >= args.budget_s:
                evaluate(iteration)
        if args.budget_s is not None and clock["train"] >= args.budget_s:
            raise BudgetSpent

    evaluate(0)
    stopped_by_budget = False
    try:
        solver(source_batches, target_batches, source_batches, target_batches,
               callback=callback)
    except BudgetSpent:
        stopped_by_budget = True
    last = curve[-1]

    # W2NeuralDual's own DualPotentials.transport on x_test, for comparison with grad f
    dual = solver.to_dual_potentials()
    ott_transport = np.asarray(dual.transport(x_test_j))
    predicted = np.asarray(forward_map(solver.state_f.params, x_test_j))

    seconds_to_target, iteration_to_target, wall_to_target = {}, {}, {}
    for target in targets:
        row = next((r for r in curve if r["l2_uvp"] <= target), None)
        key = f"{target:g}"
        seconds_to_target[key] = None if row is None else row["seconds"]
        iteration_to_target[key] = None if row is None else row["iteration"]
        wall_to_target[key] = None if row is None else row["wall_seconds"]
    timed = last["iteration"] - 1
    first = clock["first_step"] or 0.0
    result = {
        "peer": "ott-jax W2NeuralDual",
        "pair": {k: meta[k] for k in ("pair", "dim", "seed", "n", "n_test")},
        "npz": os.path.abspath(args.npz),
        "settings": {
            "neural_f": f"ICNN(dim_hidden={hidden}, pos_weights={positive}, "
                        f"init={'gaussian_map_samples (one batch)' if init else 'identity'})",
            "neural_g": (f"PotentialMLP(dim_hidden={hidden}, is_potential=False)"
                         if args.g == "mlp"
                         else f"ICNN(dim_hidden={hidden}, pos_weights={positive})"),
            "optimizer_f": f"adam(b1=0.5, b2=0.5), cosine {args.lr:g} -> "
                           f"{args.lr * TUTORIAL['lr_final_factor']:g} over {args.iters}",
            "optimizer_g": "adam(b1=0.9, b2=0.999), same schedule",
            "conjugate_solver": "ott default: FenchelConjugateLBFGS(gtol=1e-5, max_iter=20, "
                                "backtracking)",
            "amortization_loss": "regression (default)", "pos_weights": positive,
            "num_inner_iters": args.inner_iters, "parallel_updates": args.inner_iters == 1,
            "iters": args.iters, "batch_size": args.batch_size, "eval_every": args.eval_every,
            "seed": args.seed, "budget_s": args.budget_s, "n_train_pool": len(x_train),
        },
        "versions": _versions(),
        "machine": {"cpu": _cpu_model(), "jax_backend": jax.default_backend(),
                    "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
                    "XLA_FLAGS": os.environ.get("XLA_FLAGS"),
                    "cpus_allowed": len(os.sched_getaffinity(0))},
        "forward_map": "grad f (source -> target)",
        "curve_columns": ["seconds", "iteration", "l2_uvp"],
        "curve": [[r["seconds"], r["iteration"], r["l2_uvp"]] for r in curve],
        "curve_detail": curve,
        "final_l2_uvp": last["l2_uvp"], "final_cos": last["cos"],
        "iterations": last["iteration"], "stopped_by_budget": stopped_by_budget,
        "train_seconds": last["seconds"], "eval_seconds": round(clock["eval"], 3),
        "first_step_seconds": round(first, 3),
        "iters_per_s": (round(last["iteration"] / last["seconds"], 3)
                        if last["seconds"] > 0 else None),
        "iters_per_s_after_first": (round(timed / (last["seconds"] - first), 3)
                                    if timed > 0 and last["seconds"] > first else None),
        "seconds_to_target": seconds_to_target, "iteration_to_target": iteration_to_target,
        "wall_seconds_to_target": wall_to_target,
        "dual_potentials_transport_l2_uvp": l2_uvp(ott_transport, tx_test, variance),
        "dual_potentials_transport_vs_grad_f_max_abs": float(
            np.abs(ott_transport - predicted).max()),
        # ott-jax 0.6.0 builds DualPotentials with f = |x|^2/2 - f_icnn and cost SqEuclidean
        # (|x - y|^2, whose twist halves the gradient): its transport is the midpoint
        "dual_potentials_transport_vs_midpoint_max_abs": float(
            np.abs(ott_transport - (x_test + predicted) / 2).max()),
        "identity_l2_uvp": identity,
        "bures_l2_uvp_otmap": meta["reference_on_x_test"]["bures_l2_uvp"],
    }
    text = json.dumps(result)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
