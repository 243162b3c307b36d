"""Markdown tables of the combiner and drift studies.

>>> md_table(["a", "b"], [[1, 2.5]])
'| a | b |\\n|---|---|\\n| 1 | 2.500 |'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


def _fmt(v, digits: int = 3) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def md_table(header: Sequence[str], rows: Sequence[Sequence], digits: int = 3) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(v, digits) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def family(label: str) -> str:
    return label.split(" ")[0] if label.split(" ")[0] in FAMILIES else label


FAMILIES = ("inverse_mse", "sliding_mse", "hedge", "eg", "stacking", "ftl")


def combiner_tables(scores: Mapping, ranking: Sequence, chosen: str, default_label: str) -> str:
    """All the combiner study's tables as Markdown."""
    order = {"none": 0, "gradual": 1, "abrupt": 2, "step": 3}
    keys = sorted(scores, key=lambda k: (scores[k]["window"], order.get(scores[k]["scenario"], 9), k))
    parts = []
    # 1. headline: per stream RMSE (MAE) for the baselines, the chosen default and the oracle
    head = ["approach"] + [scores[k].get("label", k) for k in keys]
    labels = ["batch", "speed", "static 0.3 (prototype)", default_label]
    labels += [chosen] if chosen != default_label else []
    rows = []
    for label in labels:
        tag = (
            " **(default)**" if label == default_label else (" (robust choice of this run)" if label == chosen else "")
        )
        rows.append(
            [label + tag]
            + [
                f"{scores[k]['candidates'][label]['rmse']:.3f} ({scores[k]['candidates'][label]['mae']:.3f})"
                for k in keys
            ]
        )
    for name in ("persistence", "online_linear"):
        if all(name in scores[k].get("baselines", {}) for k in keys):
            cells = [scores[k]["baselines"][name] for k in keys]
            rows.append([f"{name} (baseline)"] + [f"{c['rmse']:.3f} ({c['mae']:.3f})" for c in cells])
    if any(scores[k].get("early_models") for k in keys):
        rows.append(
            ["speed models trained (drift-triggered)"]
            + [f"{scores[k].get('speed_models', 0)} ({scores[k].get('early_models', 0)})" for k in keys]
        )
    rows.append(["best constant weight in hindsight (oracle)"] + [f"{scores[k]['oracle']['rmse']:.3f}" for k in keys])
    rows.append(["  its speed weight"] + [f"{scores[k]['oracle']['weight']:.2f}" for k in keys])
    parts.append("### RMSE (MAE) over the whole stream, °C\n\n" + md_table(head, rows))

    # 1b. each family's best configuration (by the same first-half selection)
    fam_rows = []
    seen: set[str] = set()
    for label, worst, _ in ranking:
        fam = family(label)
        if fam in seen:
            continue
        seen.add(fam)
        tag = " **(default)**" if label == default_label else ""
        fam_rows.append([label + tag] + [scores[k]["candidates"][label]["rmse"] for k in keys] + [worst])
    base = [
        [label] + [scores[k]["candidates"][label]["rmse"] for k in keys] + [None]
        for label in ("batch", "speed", "static 0.3 (prototype)")
    ]
    base += [
        [f"{name} (baseline)"] + [scores[k]["baselines"][name]["rmse"] for k in keys] + [None]
        for name in ("persistence", "online_linear")
        if all(name in scores[k].get("baselines", {}) for k in keys)
    ]
    parts.append(
        "### Best configuration of each family (selected on the first halves), RMSE over the whole stream, °C\n\n"
        + md_table([*head, "worst regret (1st half)"], base + fam_rows)
    )

    # 2. robustness ranking (selection on the first half, report on the second)
    rank_rows = []
    for label, worst, mean in ranking[:15]:
        second = [scores[k]["candidates"][label]["rmse_second_half"] for k in keys]
        best2 = [min(c["rmse_second_half"] for c in scores[k]["candidates"].values()) for k in keys]
        reg2 = [a / b for a, b in zip(second, best2, strict=True)]
        rank_rows.append([label, worst, mean, max(reg2), sum(reg2) / len(reg2)])
    parts.append(
        "### Selection: regret = RMSE / best RMSE of all candidates on that stream\n\n"
        "Ranked on the first half of every stream (worst case, then mean); the last two columns are the same\n"
        "regrets on the held-out second half.\n\n"
        + md_table(
            ["candidate", "worst (1st half)", "mean (1st half)", "worst (2nd half)", "mean (2nd half)"], rank_rows
        )
    )

    # 3. every candidate, RMSE per stream
    all_labels = list(next(iter(scores.values()))["candidates"])
    rows = [[label] + [scores[k]["candidates"][label]["rmse"] for k in keys] for label in all_labels]
    timed = next(k for k in keys if next(iter(scores[k]["candidates"].values()))["us_per_record"] is not None)
    us = [[label, scores[timed]["candidates"][label]["us_per_record"]] for label in all_labels]
    parts.append("### Every candidate: RMSE over the whole stream, °C\n\n" + md_table(head, rows))
    parts.append(
        f"### Cost per record (predict_one + weights + learn_one, pure Python, median of 3 passes on {timed}), µs\n\n"
        + md_table(["candidate", "µs/record"], us, 2)
    )
    return "\n\n".join(parts) + "\n"


def drift_tables(results: Mapping, ranking: Sequence, chosen: str) -> str:
    parts = []
    inj = list(next(iter(results.values()))["injected"])
    head = ["detector"] + [f"{k}: delay (hits)" for k in inj] + [f"{k}: other alarms/10k" for k in inj]
    head += ["gauss false/10k", "t3 false/10k", "µs/update"]
    rows = []
    for label, row in results.items():
        tag = " **(default)**" if label == chosen else ""
        cells = [label + tag]
        for k in inj:
            r = row["injected"][k]
            md = "—" if r["mean_delay"] is None else f"{r['mean_delay']:.0f}"
            cells.append(f"{md} ({r['detected']}/{r['changes']})")
        cells += [row["injected"][k]["false_per_10k"] for k in inj]
        cells += [row["noise_false_per_10k"]["gauss"], row["noise_false_per_10k"]["student-t3"], row["us_per_update"]]
        rows.append(cells)
    parts.append(
        "### Controlled injections into the no-drift hybrid residuals, and stationary noise\n\n"
        + md_table(head, rows, 2)
    )
    keys = list(next(iter(results.values()))["streams"])
    step_keys = [k for k in keys if k.startswith("step/")]
    head = ["detector"] + [f"{k} delays" for k in step_keys] + [f"{k} alarms/10k" for k in keys]
    rows = []
    for label, row in results.items():
        cells = [label]
        for k in step_keys:
            cells.append(", ".join("miss" if d is None else str(d) for d in row["streams"][k]["delays"]))
        cells += [row["streams"][k]["alarms_per_10k"] for k in keys]
        rows.append(cells)
    parts.append(
        "### Real model residuals: step-scenario delays and alarm rates per scenario\n\n" + md_table(head, rows, 1)
    )
    parts.append(
        "### Ranking: eligible with <= 1 false alarm per 10k rows on both noises and <= 3 µs per update; "
        "then fewest missed injections, then mean delay\n\n"
        + md_table(
            ["detector", "injections missed (of 9)", "mean delay (rows)", "noise false/10k", "no-drift alarms/10k"],
            ranking,
            2,
        )
    )
    return "\n\n".join(parts) + "\n"


def run_table(result) -> str:
    """The ``eval run`` table: RMSE, MAE, RMSE per half and skill vs persistence per approach."""
    sc = result.scores(variants=True)
    base = sc["persistence"]["rmse"]
    rows = []
    for name, v in sc.items():
        skill = 1.0 - v["rmse"] / base if base > 0 else None
        rows.append([name, v["rmse"], v["mae"], v["rmse_first_half"], v["rmse_second_half"], skill])
    head = ["approach", "RMSE", "MAE", "RMSE 1st half", "RMSE 2nd half", "skill vs persistence"]
    note = (
        f"{int(result.scored.sum())} scored rows, horizon {result.spec.horizon}, "
        f"{len(result.speed_models)} speed re-trainings (window {result.window}), {result.seconds:.0f} s"
    )
    return md_table(head, rows) + "\n\n" + note


_PARTS = (("rmse", "whole"), ("rmse_first_half", "first half"), ("rmse_second_half", "second half"))


def beats_table(scores: Mapping, approach: str = "dynamic") -> str:
    """Does ``approach`` beat persistence, online_linear and every other approach, per run and part?

    Cells: ``yes`` / ``NO`` and the relative margin (1 - RMSE_approach / RMSE_other, + = ``approach``
    better); "every other" names the best other approach of that part.

    >>> s = {"r": {"dynamic": {"rmse": 0.9, "rmse_first_half": 1.0, "rmse_second_half": 0.8},
    ...            "persistence": {"rmse": 1.0, "rmse_first_half": 1.0, "rmse_second_half": 1.0},
    ...            "online_linear": {"rmse": 0.95, "rmse_first_half": 0.9, "rmse_second_half": 1.0}}}
    >>> for cell in beats_table(s).splitlines()[-1].split(" | ")[1:]:
    ...     print(cell)
    yes +10.00 % / yes +0.00 % / yes +20.00 %
    yes +5.26 % / NO -11.11 % / yes +20.00 %
    yes +5.26 % (online_linear) / NO -11.11 % (online_linear) / yes +20.00 % (persistence) |
    """

    def cell(mine: float, other: float) -> str:
        margin = 1.0 - mine / other
        return f"{'yes' if mine <= other else 'NO'} {100 * margin:+.2f} %"

    rows = []
    for run, sc in scores.items():
        row = [run]
        for other in ("persistence", "online_linear"):
            row.append(" / ".join(cell(sc[approach][k], sc[other][k]) for k, _ in _PARTS))
        best = []
        for k, _ in _PARTS:
            rival = min((n for n in sc if n != approach), key=lambda n: sc[n][k])
            best.append(f"{cell(sc[approach][k], sc[rival][k])} ({rival})")
        row.append(" / ".join(best))
        rows.append(row)
    head = [
        "run",
        f"{approach} <= persistence (whole / 1st / 2nd half)",
        f"{approach} <= online_linear",
        f"{approach} <= every other approach",
    ]
    return md_table(head, rows)


SINGLE = ("batch", "speed", "static", "persistence", "online_linear")


def regret_table(scores: Mapping, approaches: Sequence[str]) -> str:
    """MSE of each of ``approaches`` / the best single approach's (batch, speed, static, persistence,
    online_linear) over the whole stream, its first and its second half, per run (<= 1.01: issue 17's target;
    bold: missed); the best single approach over the whole stream in brackets.

    >>> s = {"r": {k: {"rmse": 1.0, "rmse_first_half": 1.0, "rmse_second_half": 1.0} for k in SINGLE}}
    >>> s["r"]["dynamic"] = {"rmse": 1.01, "rmse_first_half": 0.9, "rmse_second_half": 1.1}
    >>> regret_table(s, ["dynamic"]).splitlines()[-1]
    '| r | **1.020** / 0.810 / **1.210** (batch) |'
    """
    rows = []
    for run, sc in scores.items():
        row = [run]
        for a in approaches:
            if a not in sc:
                row.append("—")
                continue
            cells = []
            for k, _ in _PARTS:
                best = min(SINGLE, key=lambda n: sc[n][k])
                r = (sc[a][k] / sc[best][k]) ** 2
                cells.append(f"**{r:.3f}**" if r > 1.01 else f"{r:.3f}")
            row.append(" / ".join(cells) + f" ({min(SINGLE, key=lambda n: sc[n]['rmse'])})")
        rows.append(row)
    head = ["run", *(f"{a}: MSE / best single's (whole / 1st / 2nd half)" for a in approaches)]
    return md_table(head, rows)


def adds_table(results: Mapping) -> str:
    """What each LSTM buys the dynamic forecast, per saved ``eval run --ablation`` result: "X adds" =
    1 - MSE(dynamic) / MSE(dynamic without X), whole stream / first / second half (+ = X helps; issue 17 asks
    >= 1 % of the speed model on gradual and step), and the hindsight bound on the speed model's: the best
    fixed blend ``no speed + a * (speed - no speed)``, ``a`` least squares over the whole stream (no online
    combiner of these two forecasts does better with one weight)."""
    rows = []
    for run, r in results.items():
        sc = r.scores(variants=True)
        row = [run]
        for model in ("speed", "batch"):
            without = sc.get(f"dynamic no {model}")
            if without is None:
                row.append("—")
                continue
            cells = [f"{100 * (1 - (sc['dynamic'][k] / without[k]) ** 2):+.2f} %" for k, _ in _PARTS]
            row.append(" / ".join(cells))
        no_speed = r.variants.get("dynamic no speed")
        if no_speed is None:
            row.append("—")
        else:
            ok = r.scored & np.isfinite(no_speed)
            d, miss = (r.forecasts["speed"] - no_speed)[ok], (r.y - no_speed)[ok]
            a = float(d @ miss / (d @ d)) if d @ d > 0 else 0.0
            bound = 1 - np.mean((miss - a * d) ** 2) / np.mean(miss**2)
            row.append(f"{100 * bound:+.2f} % (a = {a:.2f})")
        rows.append(row)
    head = ["run", "speed adds (whole / 1st / 2nd half)", "batch adds (whole / 1st / 2nd half)"]
    return md_table([*head, "speed adds at best (fixed blend in hindsight)"], rows)


def _gain(v: float) -> str:
    """A gain in %, two decimals; below -100 % (more than twice the reference's MSE, e.g. a cross-fitted blend
    blown up by a fault in one fold) just "< -100".

    >>> _gain(0.01234), _gain(-3.5), _gain(float("nan"))
    ('+1.23', '< -100', 'nan')
    """
    if np.isnan(v):
        return "nan"
    return "< -100" if v < -1 else f"{100 * v:+.2f}"


def headroom_table(results: Mapping) -> str:
    """The ``eval table --headroom`` table: per run (and the mean of the runs' MSEs when there are several) of
    :func:`hybridstream.evaluation.headroom.headroom` results, ``1 - MSE / MSE(online_linear)`` whole / first /
    second half of the dynamic forecast and of each hindsight ceiling, and what the speed model adds (at best, and
    to dynamic when the run has ``dynamic no speed``)."""
    from hybridstream.evaluation.headroom import gains, mean_of  # noqa: PLC0415

    columns = [
        ("dynamic", "dynamic (actual)"),
        ("causal", "(c) causal online"),
        ("fixed", "(a) one fixed blend"),
        ("fixed xfit", "(a) cross-fitted"),
        ("block", "(b) refitted per block"),
        ("block xfit", "(b) cross-fitted"),
        ("fixed no speed", "(a) no speed"),
        ("block no speed", "(b) no speed"),
        ("speed adds dynamic", "speed adds to dynamic (actual)"),
        ("speed adds fixed", "speed adds at best (a)"),
        ("speed adds fixed xfit", "(a) cross-fitted"),
        ("speed adds block", "speed adds at best (b)"),
        ("speed adds block xfit", "(b) cross-fitted"),
    ]
    named = dict(results)
    if len(named) > 1:
        named["mean of the runs' MSEs"] = mean_of(results)
    rows = []
    for run, h in named.items():
        g = gains(h["mse"])
        row = [run, f"{h['rows']} ({h['left_out']})"]
        for key, _ in columns:
            row.append(" / ".join(_gain(g[key][p]) for p in g[key]) + " %" if key in g else "—")
        rows.append(row)
    any_run = next(iter(results.values()))
    sizes = {run: h["block"] for run, h in results.items()}
    if len(set(sizes.values())) == 1:
        blocks = f"blocks of {any_run['block']} rows"
    else:
        blocks = "blocks per run: " + ", ".join(f"{run} {b}" for run, b in sizes.items()) + " rows"
    title = (
        "Hindsight ceilings: least squares of y on batch, speed, persistence, online_linear"
        + (" and a constant" if any_run["intercept"] else "")
        + f", fitted on the scored stream itself ({blocks}). A ceiling for a blend of these experts with hindsight "
        "weights, not a result, and no bound on a combiner whose weights move faster (an online blend can beat "
        "(a)). Cells: 1 - MSE / MSE(online_linear), whole / 1st / 2nd half (each fitted on its own rows); "
        "cross-fitted: alternate chunks (a block for (a), a tenth of one for (b)) scored with weights fitted on "
        f"the others with a ridge of {any_run.get('ridge', 0):g} x rows x each column's mean square towards "
        "online_linear (< -100: more than twice online_linear's MSE; nan: the part is a single chunk); speed "
        "adds = 1 - MSE / MSE without the speed model"
    )
    if "causal_half_life" in any_run:
        title += (
            "; (c) causal online: a measured result, not a ceiling: dynamic + a layer of least squares of y - dynamic "
            "on the experts' differences from dynamic with forgetting (half-life "
            f"{any_run['causal_half_life']:g} rows) and a ridge of {any_run['causal_ridge']:g} x each column's "
            "weighted sum of squares, each row forecast from rows whose truth had arrived (the horizon's delay)"
        )
    head = ["run", "rows (left out: NaN)", *(label for _, label in columns)]
    return title + "\n\n" + md_table(head, rows)


def experts_tables(scores: Mapping, ranking: Sequence, second_ranking: Sequence, approaches: Sequence[str]) -> str:
    """The ``eval experts`` tables: RMSE per run of the run's approaches and the 8 best candidates, the
    selection (regret on the first halves, the second halves beside), RMSE per half of the 3 best."""
    keys = list(scores)
    head = ["approach", *keys]
    top = [label for label, *_ in ranking[:8]]
    rows = [[name] + [scores[k][name]["rmse"] for k in keys] for name in [*approaches, *top]]
    md = "### RMSE over the whole stream\n\n" + md_table(head, rows)
    second = {label: (worst, mean) for label, worst, mean in second_ranking}
    rank_rows = [[label, worst, mean, *second[label]] for label, worst, mean in ranking[:15]]
    md += "\n\n### Selection (regret on the first halves; second halves beside)\n\n" + md_table(
        ["candidate", "worst (1st)", "mean (1st)", "worst (2nd)", "mean (2nd)"], rank_rows
    )
    halves = [
        [name] + [f"{scores[k][name]['rmse_first_half']:.3f} / {scores[k][name]['rmse_second_half']:.3f}" for k in keys]
        for name in [*approaches, *top[:3]]
    ]
    return md + "\n\n### RMSE first half / second half\n\n" + md_table(head, halves)


def saved_runs_table(scores: Mapping, names: Sequence[str], digits: int = 3) -> str:
    """The ``eval table`` table: per approach in ``names``, per saved run: RMSE over the whole stream
    (first half / second half) and the skill vs persistence."""
    d = max(0, int(digits))
    rows = []
    for name in names:
        cells = [name]
        for k in scores:
            v, base = scores[k][name], scores[k]["persistence"]["rmse"]
            cells.append(
                f"{v['rmse']:.{d}f} ({v['rmse_first_half']:.{d}f} / {v['rmse_second_half']:.{d}f}) "
                f"{100 * (1 - v['rmse'] / base):+.1f} %"
            )
        rows.append(cells)
    return "RMSE over the whole stream (first half / second half), skill vs persistence\n\n" + md_table(
        ["approach", *scores], rows
    )
