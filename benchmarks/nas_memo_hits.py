"""How often ``FrozenLatencyProfiler``'s memo answers on NasBench101 (keyed by the canonical graph) in a random search
and in a regularized evolution (population 20, tournament 5, one label mutated per child). Counts, not times: the
figures do not depend on the machine. Prints a markdown table.

    python benchmarks/nas_memo_hits.py --samples 300
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from nas_loss_speed import synthetic_model  # noqa: E402


def _random(space, rng: np.random.RandomState) -> dict:
    while True:
        sample: dict = {}
        try:
            space.random(memo=sample, random_state=rng)
            return sample
        except ValueError:  # NNI's ConstraintViolation: draw again
            continue


def _mutate(space, parent: dict, rng: np.random.RandomState) -> dict:
    choices = {k: m for k, m in space.simplify().items() if hasattr(m, "values")}
    while True:
        label = list(choices)[rng.randint(len(choices))]
        child = {k: v for k, v in parent.items() if not isinstance(v, dict)}  # the constraint's summary is recomputed
        try:
            child[label] = choices[label].random(random_state=rng)
            space.validate(child)
            return child
        except ValueError:
            continue


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(section(args.samples, args.seed, title=False))
    return 0


def section(samples: int = 300, seed: int = 0, title: bool = True) -> str:
    """The markdown table (and, with ``title``, its heading): the NasBench101 memo's hit rate per search."""
    warnings.filterwarnings("ignore")
    logging.getLogger("nni").setLevel(logging.WARNING)
    from nni_latency.nas import FrozenLatencyProfiler
    from nni_latency.spaces.hub import build_space

    space = build_space("nasbench101", 16, 10, stem_out_channels=8, num_stacks=1, num_modules_per_stack=1)
    model = synthetic_model()
    rows = []
    for search in ("random", "evolution"):
        profiler = FrozenLatencyProfiler(space, (1, 3, 16, 16), model)
        rng = np.random.RandomState(seed)
        population = []
        for step in range(samples):
            if search == "random" or step < 20:
                sample = _random(space, rng)
            else:
                tournament = [population[i] for i in rng.choice(len(population), 5, replace=False)]
                sample = _mutate(space, min(tournament, key=lambda s: s[1])[0], rng)  # the fastest: latency only
            population = (population + [(sample, profiler.profile(sample))])[-20:]
        rows.append(f"| {search} | {samples} | {profiler.misses} | {profiler.hits} | {profiler.hit_rate:.1%} |")
    heading = ["## NasBench101: the frozen profiler's memo, by canonical graph", "",
               "Isomorphic cells (and choices that pruning drops) hit the cache of `FrozenLatencyProfiler`; counts, "
               "not times.", ""] if title else []
    return "\n".join([*heading, "| search (NasBench101) | samples | distinct graphs (frozen) | memo hits | hit rate |",
                      "|---|---:|---:|---:|---:|", *rows, ""])


if __name__ == "__main__":
    sys.exit(main())
