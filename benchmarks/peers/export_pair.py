"""Write one of otmap's ground-truth benchmark pairs to an .npz file for a peer solver.

Runs in otmap's own environment (it imports otmap and torch); the peer scripts beside it
(``ott_w2.py``) read the file with numpy only. The pair is built exactly as ``otmap bench``
builds it: ``otmap.benchmarks.registry.benchmark_pair(name, dim, seed=seed, root=...)``,
i.e. ``GaussianPair(dim, seed)``, ``BrenierPair(dim, seed)`` or ``W2BenchmarkPair(dim, root)``.

    python benchmarks/peers/export_pair.py --pair gaussian --dim 16 --n 131072 \
        --out /tmp/otmap-peer-gaussian-16.npz

The file holds
  x_train, y_train   [n, dim] float32: independent source and target samples (unpaired:
                     the target samples are T*(fresh source samples), as ``pair.target`` draws)
  x_test, tx_test    [n_test, dim] float32 / float64: fixed source samples and T*(x_test)
  target_variance    Var(nu) = tr Cov(nu): the pair's own forward L2-UVP normaliser
  source_variance    Var(mu) (the inverse direction's normaliser)
  meta               a JSON string: pair, dim, seeds, n, otmap's version, and reference
                     L2-UVPs on x_test computed with otmap.metrics.vectors.l2_uvp (identity map,
                     the linear Bures map fit on 20k samples) for the peer to check its formula

L2-UVP = 100 * mean_i |T(x_i) - T*(x_i)|^2 / target_variance (otmap.metrics.vectors.l2_uvp).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

#: the default seed of the fixed test set: not 0, so that it differs from the training draw
TEST_SEED = 1234
CHUNK = 8192


def _draw(sampler, n: int, generator: torch.Generator) -> np.ndarray:
    """``n`` samples of ``sampler`` in chunks (the W2 benchmark's map is memory-hungry)."""
    parts = [sampler.sample(min(CHUNK, n - i), generator) for i in range(0, n, CHUNK)]
    return torch.cat(parts).numpy().astype(np.float32)


def main(argv: list[str] | None = None) -> int:
    from otmap import __version__
    from otmap.benchmarks.gaussian import BuresMap
    from otmap.benchmarks.registry import benchmark_pair
    from otmap.metrics.vectors import l2_uvp

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pair", required=True, choices=("gaussian", "brenier", "w2b"))
    parser.add_argument("--dim", type=int, required=True)
    parser.add_argument("--root", default=None,
                        help="w2b only: folder with {D}_v1.pt/{D}_v2.pt (default: "
                             "$OTMAP_W2B_DIR, else /work/shared/benchmarks/w2b)")
    parser.add_argument("--n", type=int, default=2**17,
                        help="training samples from each of source and target (default 2^17)")
    parser.add_argument("--n-test", type=int, default=4096)
    parser.add_argument("--seed", type=int, default=0,
                        help="the pair's seed, as otmap bench --seed (default 0)")
    parser.add_argument("--data-seed", type=int, default=0,
                        help="seed of the torch generator drawing the training samples")
    parser.add_argument("--test-seed", type=int, default=TEST_SEED)
    parser.add_argument("--out", default=None,
                        help="output .npz (default /tmp/otmap-peer-{pair}-{dim}.npz)")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    options = {}
    if args.pair == "w2b":
        options["root"] = (args.root or os.environ.get("OTMAP_W2B_DIR")
                           or "/work/shared/benchmarks/w2b")
    pair = benchmark_pair(args.pair, args.dim, seed=args.seed, **options)

    train_gen = torch.Generator().manual_seed(args.data_seed)
    x_train = _draw(pair.source, args.n, train_gen)
    y_train = _draw(pair.target, args.n, train_gen)

    test_gen = torch.Generator().manual_seed(args.test_seed)
    x_test = pair.source.sample(args.n_test, test_gen)
    tx_test = pair.true_map(x_test.double())  # float64 truth

    # reference numbers with otmap's own metric, for the peer's formula check
    bures = BuresMap.fit(pair.source.sample(20000, test_gen), pair.target.sample(20000, test_gen))
    with torch.no_grad():
        reference = {
            "identity_l2_uvp": l2_uvp(x_test, tx_test, pair.target_variance),
            "bures_l2_uvp": l2_uvp(bures(x_test), tx_test, pair.target_variance),
        }
    meta = {
        "pair": args.pair, "dim": args.dim, "seed": args.seed, "data_seed": args.data_seed,
        "test_seed": args.test_seed, "n": args.n, "n_test": args.n_test,
        "root": options.get("root"), "otmap_version": __version__,
        "torch_version": torch.__version__, "reference_on_x_test": reference,
        "l2_uvp": "100 * mean_i |T(x_i) - T*(x_i)|^2 / target_variance",
    }
    out = Path(args.out or f"/tmp/otmap-peer-{args.pair}-{args.dim}.npz")
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, x_train=x_train, y_train=y_train,
             x_test=x_test.numpy().astype(np.float32), tx_test=tx_test.numpy(),
             target_variance=np.float64(pair.target_variance),
             source_variance=np.float64(pair.source_variance or np.nan),
             meta=np.array(json.dumps(meta)))
    print(json.dumps({"out": str(out), "seconds": round(time.perf_counter() - start, 2),
                      "target_variance": pair.target_variance, **meta}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
