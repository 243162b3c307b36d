"""The history and the stream of ``hybridstream eval run``: a turbine scenario or a user's CSV pair, checked.

Too few rows for the lags and horizon, or a CSV the contract cannot read, raise
:class:`~hybridstream.evaluation.csv_input.EvalInputError` (the CLI exits 2); a stream shorter than
one window or timestamps out of order only warn.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from hybridstream.evaluation import csv_input
from hybridstream.evaluation.csv_input import EvalInputError
from model_contract import FeatureSpec


def scenario_input(name: str, lags: tuple[int, ...], horizon: int, calendar: tuple[str, ...]):
    """(train, test, spec, (train name, test name)) of a turbine scenario of docs/combination.md."""
    from hybridstream.evaluation.data import SCENARIOS, load_scenario  # noqa: PLC0415

    try:
        spec = FeatureSpec(lags=lags, horizon=horizon, calendar=calendar)
    except ValueError as exc:
        raise EvalInputError(str(exc)) from None
    train, test = load_scenario(SCENARIOS[name], spec)
    return train, test, spec, (f"scenario {name}", SCENARIOS[name].description)


def csv_pair_input(
    train_path: str,
    test_path: str,
    *,
    time_format: str | None,
    target: str | None,
    columns: list[str] | None,
    lags: tuple[int, ...],
    horizon: int,
    calendar: tuple[str, ...],
    log: Callable[[str], None],
):
    """(train, test, spec, (train name, test name)) of a user's CSV pair; the columns chosen are logged."""
    log(f"reading {train_path} and {test_path}...")
    t_train, t_test = (csv_input.read_table(f, time_format) for f in (train_path, test_path))
    spec = csv_input.choose_spec(t_train, t_test, target, columns, lags, horizon, calendar)
    train, test = csv_input.to_matrix(t_train, spec), csv_input.to_matrix(t_test, spec)
    for table in (t_train, t_test):
        problem = csv_input.timestamp_order_problem(table)
        if problem:
            log(f"warning: {problem}")
    log(
        f"columns {', '.join(spec.columns)}; target {spec.target}; timestamp column "
        f"{t_train.timestamp_column or '(none detected)'}; lags {spec.lags}; horizon {spec.horizon}; "
        f"calendar {', '.join(spec.calendar) or 'none'}"
    )
    return train, test, spec, (train_path, test_path)


def check_lengths(
    train: np.ndarray,
    test: np.ndarray,
    spec: FeatureSpec,
    names: tuple[str, str],
    window: int,
    log: Callable[[str], None],
) -> None:
    """Enough history to train the batch model and enough stream to score it."""
    need = spec.max_lag + spec.horizon
    min_train = max(100, 10 * need)
    if len(train) < min_train:
        raise EvalInputError(
            f"{names[0]}: {len(train)} rows; the batch model needs at least {min_train} (lags and horizon)"
        )
    if len(test) < need + 10:
        raise EvalInputError(f"{names[1]}: {len(test)} rows; at least {need + 10} are needed to score forecasts")
    if window >= len(test):
        log(f"warning: the test stream ({len(test)} rows) is shorter than one window: no speed model is re-trained")
