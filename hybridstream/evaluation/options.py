"""The values of ``hybridstream eval`` options, parsed and checked; bad ones raise :class:`EvalInputError`.

``eval run`` and ``eval benchmark`` share the model options (lags, calendar, horizon, training config,
cache, variants, faults): :func:`model_options` reads them once for both. The CLI prints an
:class:`EvalInputError` and exits 2.

>>> parse_lags(["1-3", "5,7"])
(1, 2, 3, 5, 7)
>>> parse_columns(" a, b,,c ")
['a', 'b', 'c']
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hybridstream.evaluation.csv_input import EvalInputError

# --ablation: dynamic replayed without the speed model, without the batch model and without both
ABLATION = {
    "dynamic no speed": {"strategy": "dynamic", "use_speed": False},
    "dynamic no batch": {"strategy": "dynamic", "use_batch": False},
    "dynamic neither": {"strategy": "dynamic", "use_batch": False, "use_speed": False},
}


def parse_lags(values: list[str] | None) -> tuple[int, ...] | None:
    """``--lags 1 2 3``, ``1,2,3`` or ``1-24`` as a tuple (None if not given; ValueError if not integers)."""
    if not values:
        return None
    out = []
    for v in values:
        for part in v.split(","):
            part = part.strip()
            if not part:
                continue
            if "-" in part:
                lo, hi = part.split("-", 1)
                out += list(range(int(lo), int(hi) + 1))
            else:
                out.append(int(part))
    return tuple(out)


def parse_columns(option: str | None) -> list[str] | None:
    """``--columns a,b,c`` as a list (None if not given)."""
    return [c.strip() for c in option.split(",") if c.strip()] if option else None


def cache_dir(option: str | None) -> Path | None:
    """``--cache-dir``: 'none' disables the cache, nothing means the default (``.cache/eval``)."""
    from hybridstream.evaluation.streams import DEFAULT_CACHE  # noqa: PLC0415

    if option == "none":
        return None
    return Path(option) if option else DEFAULT_CACHE


def train_config(epochs: int | None, seed: int | None, changes: str | None, option: str = "--train-config"):
    """The trainer's ``TrainConfig`` with ``--epochs``, ``--seed`` and ``--train-config`` (``option``) JSON applied."""
    from training_job.model import TrainConfig, parse_config_changes  # noqa: PLC0415

    cfg = TrainConfig()
    if epochs:
        cfg = cfg.replace(epochs=epochs)
    if seed is not None:
        cfg = cfg.replace(seed=seed)
    if not changes:
        return cfg
    try:
        return cfg.replace(**parse_config_changes(changes, option))
    except ValueError as exc:
        raise EvalInputError(str(exc)) from None


def variants(ablation: bool, option: str | None) -> dict | None:
    """More dynamic combiners replayed beside ``dynamic``: the ablation's and ``--variants`` JSON (label -> config)."""
    out = dict(ABLATION) if ablation else {}
    if option:
        try:
            extra = json.loads(option)
        except json.JSONDecodeError as exc:
            raise EvalInputError(f"--variants: not JSON ({exc})") from None
        if not isinstance(extra, dict) or not all(isinstance(v, dict) for v in extra.values()):
            raise EvalInputError(
                '--variants: a JSON object of label -> combiner config, e.g. {"x": {"blend": "experts"}}'
            )
        out |= {f"dynamic {k}": {"strategy": "dynamic"} | v for k, v in extra.items()}
    return out or None


def inject_faults(test, target_index: int, option: str, log: Callable[[str], None], skip: int = 0):
    """``test`` with the ``--faults`` kinds injected into its target column (rows before ``skip`` left alone)."""
    from hybridstream.evaluation import faults  # noqa: PLC0415

    try:
        out, where = faults.inject(test, target_index, faults.parse_kinds(option), skip=skip)
    except ValueError as exc:
        raise EvalInputError(f"--faults: {exc}") from None
    log("faults injected (stream rows): " + ", ".join(f"{k} {a}-{b}" for k, (a, b) in where.items()))
    return out


@dataclass(frozen=True)
class ModelOptions:
    """What ``eval run`` and ``eval benchmark`` read alike: the features, the training and the extra combiners."""

    lags: tuple[int, ...]
    calendar: tuple[str, ...]
    horizon: int
    cfg: object  # training_job.model.TrainConfig
    cache_dir: Path | None
    variants: dict | None
    auto_lags: bool = False  # --lags auto: chosen per target on its history (eval benchmark)
    speed_cfg: object = None  # --speed-train-config: the speed models' TrainConfig (None: cfg)


def model_options(args: argparse.Namespace) -> ModelOptions:
    """The shared options of ``args``, checked (lags default to the trainer's)."""
    from model_contract import FeatureSpec  # noqa: PLC0415
    from model_contract.calendar import parse_calendar_option  # noqa: PLC0415

    auto = [v.strip() for v in args.lags or []] == ["auto"]
    try:
        lags = FeatureSpec().lags if auto else parse_lags(args.lags) or FeatureSpec().lags
    except ValueError:
        raise EvalInputError(
            f"--lags: expected integers, e.g. --lags 1 2 3 or 1-24 (got {' '.join(args.lags)})"
        ) from None
    try:
        calendar = parse_calendar_option(args.calendar)
    except ValueError as exc:
        raise EvalInputError(f"--calendar: {exc}") from None
    if args.horizon < 1:
        raise EvalInputError("--horizon must be >= 1")
    return ModelOptions(
        lags=lags,
        calendar=calendar,
        horizon=args.horizon,
        cfg=train_config(args.epochs, args.seed, args.train_config),
        cache_dir=cache_dir(args.cache_dir),
        variants=variants(args.ablation, args.variants),
        auto_lags=auto,
        speed_cfg=None
        if getattr(args, "speed_train_config", None) is None
        else train_config(args.epochs, args.seed, args.speed_train_config, "--speed-train-config"),
    )
