"""The A/B statistics on simulated experiments whose truth is known: error rates, power, CUPED, ML vs rules.

A fresh demo world (its own seed, 2026 on) is generated and scored by the trained model and by the rules
baseline of params.yaml. In that world how sales works the leads changes whether they convert
(:mod:`leadscore.demo.followup`: a team with limited calls a day calls the leads its arm ranks
highest; a prompt call raises a lead's odds), so the ranking an arm uses has a real, known effect.
Printed, each with how it was measured:

  * A/A: --runs experiments where both arms work leads the same way, sized for the planned MDE
    (experiments.mde) and spread over --days daily looks. Their leads are a random share of the
    world's, worked by one team (--capacity-share) in the model's order; every run draws new arms and
    outcomes from those fixed probabilities, all runs at once with NumPy. Share of false positives at
    alpha of the fixed-horizon test read once at the planned end, of the same z-test read every day and
    stopped at the first p < alpha (peeking), and of the mSPRT always-valid p-value read every day; each
    with its Wilson 95 % interval.
  * Power: the same with a true lift of exactly the MDE: share detected at the computed sample size
    against the stated power.
  * CUPED: mean width of the lift interval with and without the model probability as covariate, the
    variance it removes and how often each interval covers the true lift.
  * ML vs rules: one experiment on the whole world, control ranked by the rules, treatment by the
    model: the true lift (each arm's ranking applied to the same leads), the observed lift with its
    interval, the always-valid p-value and the recommendation of ``analyse``.

    python benchmarks/bench_experiments.py --runs 1000
    python benchmarks/bench_experiments.py --runs 200 --leads 60000 --json   # quicker, as JSON

Needs the trained model (``make run`` writes artifacts/models/champion). Not a test: it prints figures
(about 35 s on two cores, a third of it generating and scoring the world).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from typing import Any

import numpy as np

from leadscore.core.config import ExperimentParams, load_params
from leadscore.demo.simulation import (
    CAPACITY_SHARE,
    CupedWidths,
    Rejections,
    SimulatedExperiment,
    Trial,
    World,
    build_world,
    count_rejections,
    cuped_runs,
    plan_trial,
    read_experiment,
    simulate_counts,
    simulate_experiment,
)
from leadscore.experiments.analysis import ExperimentAnalysis
from leadscore.experiments.arms import rules_points
from leadscore.experiments.proportions import arm_rate, required_sample_size
from leadscore.experiments.sequential import default_tau2
from leadscore.scoring.scorer import Scorer


def rate(count: int, runs: int) -> str:
    """``4.9% [3.7%, 6.4%]``: a share of runs with its Wilson 95 % interval."""
    share = arm_rate("runs", count, runs, 0.05)
    return f"{share.rate:6.1%} [{share.low:.1%}, {share.high:.1%}]"


def points(value: float) -> str:
    return f"{value * 100:+.2f}"


def error_table(aa: Rejections, power: Rejections, alpha: float, stated_power: float) -> list[str]:
    return [
        f"A/A, {aa.runs:,} runs, {aa.looks} daily looks, alpha {alpha:g} (share of runs with a finding):",
        f"  fixed horizon, read once at the planned end   {rate(aa.fixed, aa.runs)}",
        f"  naive z-test read daily, stop at p < alpha    {rate(aa.peeking, aa.runs)}   "
        f"{aa.peeking / aa.runs / alpha:.1f}x alpha, {aa.peeking / max(aa.fixed, 1):.1f}x the fixed horizon",
        f"  mSPRT always-valid p read daily               {rate(aa.sequential, aa.runs)}",
        f"Power, {power.runs:,} runs with a true lift of exactly the MDE (stated power {stated_power:.0%}):",
        f"  fixed horizon at the computed sample size     {rate(power.fixed, power.runs)}",
        f"  mSPRT read daily, same leads                  {rate(power.sequential, power.runs)}",
    ]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1000, help="A/A, power and CUPED runs (default: 1000)")
    parser.add_argument("--seed", type=int, default=2026, help="seed of the world and of every draw")
    parser.add_argument("--model", default="artifacts/models/champion", help="model folder of the treatment")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--leads", type=int, default=200_000, help="leads created in the simulated world")
    parser.add_argument("--months", type=int, default=3, help="months the world spans")
    parser.add_argument("--days", type=int, default=28, help="planned days of the A/A and power experiments")
    parser.add_argument("--capacity-share", type=float, default=CAPACITY_SHARE,
                        help="calls a day over leads scored a day (default: %(default)s)")
    parser.add_argument("--ml-mde", type=float, default=0.005,
                        help="MDE the ML vs rules experiment is planned for (default: %(default)s)")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    return parser.parse_args()


def repeated_trials(world: World, model: np.ndarray, args: argparse.Namespace, plan: ExperimentParams,
                    base: float) -> tuple[Trial, Trial, int]:
    """A/A and lifted trials of the planned size, on a random share of the world's leads chosen so that
    the planned sample arrives over ``--days`` days. Planned on ``base`` first, then again on the rate of
    the leads the first plan picked (the first weeks of a world convert a little differently)."""
    draw = np.random.default_rng(args.seed).random(len(world))
    world_days = (world.scored_ms[-1] - world.scored_ms[0]) / 86_400_000 + 1
    for _ in range(2):
        n_total = required_sample_size(base, plan.mde, plan.alpha, plan.power, plan.split)
        share = 1.05 * n_total * world_days / (args.days * len(world))
        if share > 1:
            raise SystemExit(f"--leads {args.leads}: too few for {n_total:,} leads in {args.days} days")
        small, score = world.subset(draw < share), model[draw < share]
        aa = plan_trial(small, score, score, n_total, capacity_share=args.capacity_share)
        base = float(aa.control.mean())
    lifted = plan_trial(small, score, score, n_total, lift=plan.mde, capacity_share=args.capacity_share)
    return aa, lifted, n_total


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every figure, with the seconds each part took."""
    params = load_params(args.params)
    plan, clock = params.experiments, [time.perf_counter()]
    world = build_world(args.leads, args.seed, params, months=args.months)
    clock.append(time.perf_counter())
    model = Scorer.load(args.model).score_frame(world.rows, reasons=0)["probability"].to_numpy(float)
    rules = rules_points(params.rules, world.rows)
    clock.append(time.perf_counter())
    experiment = simulate_experiment(world, rules, model, split=plan.split, seed=args.seed,
                                     capacity_share=args.capacity_share, salt=f"bench-{args.seed}")
    analysis = read_experiment(experiment, split=plan.split, mde=args.ml_mde, alpha=plan.alpha,
                               power=plan.power, min_days=plan.min_days)
    clock.append(time.perf_counter())
    aa, lifted, n_total = repeated_trials(world, model, args, plan, experiment.true_treatment_rate)
    tau2, seed = default_tau2(plan.mde), args.seed
    aa_rej, power_rej = (
        count_rejections(simulate_counts(trial, runs=args.runs, split=plan.split, seed=seed + i),
                         alpha=plan.alpha, tau2=tau2) for i, trial in enumerate((aa, lifted)))
    clock.append(time.perf_counter())
    cuped = cuped_runs(lifted, runs=args.runs, split=plan.split, alpha=plan.alpha, seed=seed + 2)
    clock.append(time.perf_counter())
    parts = ("world", "scores", "ml_vs_rules", "aa_and_power", "cuped")
    seconds = {name: clock[i + 1] - clock[i] for i, name in enumerate(parts)}
    seconds["total"] = clock[-1] - clock[0]
    design = {"base_rate": float(aa.control.mean()), "mde": plan.mde, "n_total": n_total, "looks": aa.looks,
              "split": plan.split, "alpha": plan.alpha, "power": plan.power, "tau2": tau2}
    truth = {"true_control_rate": experiment.true_control_rate, "true_lift": experiment.true_lift,
             "true_treatment_rate": experiment.true_treatment_rate, "mde": args.ml_mde,
             "calls_per_day": experiment.calls_per_day}
    return {"design": design, "aa": asdict(aa_rej), "power": asdict(power_rej), "cuped": asdict(cuped),
            "ml_vs_rules": truth | {"analysis": analysis.to_dict()}, "seconds": seconds,
            "_experiment": experiment, "_analysis": analysis}


def print_design(figures: dict[str, Any], args: argparse.Namespace) -> None:
    design, seconds, leads = figures["design"], figures["seconds"], figures["_experiment"].leads
    called = leads["called"].to_numpy(bool)
    print(f"world: {len(leads):,} leads scored {leads['assigned_at'].min():%Y-%m-%d} .. "
          f"{leads['assigned_at'].max():%Y-%m-%d} (seed {args.seed}), built in {seconds['world']:.1f} s; "
          f"model and rules scores in {seconds['scores']:.1f} s")
    print(f"sales: {figures['ml_vs_rules']['calls_per_day']:,.0f} calls a day ({args.capacity_share:.0%} "
          f"of the leads scored a day): {called.mean():.1%} of leads called, median wait "
          f"{np.median(leads['wait_days'][called]):.2f} days")
    print()
    print(f"Design: base rate {design['base_rate']:.2%}, MDE {points(design['mde'])} points, alpha "
          f"{design['alpha']:g}, power {design['power']:.0%} -> {design['n_total']:,} leads (split "
          f"{design['split']:g}) over {design['looks']} daily looks; mSPRT tau2 = MDE^2")


def print_table(figures: dict[str, Any], args: argparse.Namespace) -> None:
    seconds, design = figures["seconds"], figures["design"]
    aa, power = Rejections(**figures["aa"]), Rejections(**figures["power"])
    cuped = CupedWidths(**figures["cuped"])
    print_design(figures, args)
    print("\n".join(error_table(aa, power, design["alpha"], design["power"])))
    print(f"  ({seconds['aa_and_power']:.1f} s for both)")
    print(f"CUPED, {cuped.runs:,} runs of the power experiment (covariate: the model's probability):")
    print(f"  mean 95 % interval width    {cuped.unadjusted_width * 100:.2f} points plain, "
          f"{cuped.width * 100:.2f} with CUPED ({1 - cuped.width / cuped.unadjusted_width:.1%} narrower)")
    print(f"  variance reduction {cuped.variance_reduction:.1%}; coverage of the true lift "
          f"{cuped.unadjusted_coverage:.1%} plain, {cuped.coverage:.1%} with CUPED "
          f"({seconds['cuped']:.1f} s)")
    print()
    print_comparison(figures["_experiment"], figures["_analysis"], args.ml_mde)
    print()
    print(f"total {seconds['total']:.1f} s")


def print_comparison(experiment: SimulatedExperiment, analysis: ExperimentAnalysis, mde: float) -> None:
    lift, cuped, (control, treatment) = analysis.lift, analysis.cuped, analysis.arms
    print(f"ML vs rules, one experiment on all {len(experiment.leads):,} leads ({control.n:,} control, "
          f"{treatment.n:,} treatment; planned for MDE {points(mde)} points: "
          f"{analysis.required_total:,} leads, power {analysis.power:.0%}):")
    print(f"  true rates   rules {experiment.true_control_rate:.2%}, model "
          f"{experiment.true_treatment_rate:.2%}: true lift {points(experiment.true_lift)} points")
    print(f"  observed     rules {lift.control_rate:.2%}, model {lift.treatment_rate:.2%}: lift "
          f"{points(lift.absolute)} points [{points(lift.absolute_low)}, {points(lift.absolute_high)}], "
          f"z-test p {lift.p_value:.2g}")
    if cuped is not None:
        print(f"  CUPED        lift {points(cuped.lift)} points [{points(cuped.low)}, {points(cuped.high)}], "
              f"variance reduction {cuped.variance_reduction:.1%}")
    print(f"  sequential   always-valid p {analysis.sequential_p_value:.2g}, confidence sequence "
          f"[{points(analysis.sequential_low)}, {points(analysis.sequential_high)}] points")
    print(f"  decision     {analysis.recommendation.action}: " + "; ".join(analysis.recommendation.reasons))


def main() -> None:
    args = parse_args()
    figures = run(args)
    if args.json:
        figures["ml_vs_rules"]["analysis"].pop("looks")
        print(json.dumps({k: v for k, v in figures.items() if not k.startswith("_")}, indent=2))
    else:
        print_table(figures, args)


if __name__ == "__main__":
    main()
