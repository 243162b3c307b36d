"""``--train-config`` / ``--speed-train-config`` of ``eval run`` and ``eval benchmark``: one config per model kind."""

from __future__ import annotations

import argparse

import pytest

from hybridstream.evaluation import options
from hybridstream.evaluation.csv_input import EvalInputError
from training_job.model import TrainConfig


def _args(**changes) -> argparse.Namespace:
    base = {"lags": None, "calendar": "day", "horizon": 1, "epochs": None, "seed": None, "train_config": None}
    base |= {"speed_train_config": None, "cache_dir": "none", "ablation": False, "variants": None}
    return argparse.Namespace(**(base | changes))


def test_the_speed_models_take_their_own_config_or_the_batch_models():
    opts = options.model_options(_args(train_config='{"ol_residual": true}', speed_train_config="{}", epochs=3))
    assert opts.cfg == TrainConfig(ol_residual=True, epochs=3) and opts.speed_cfg == TrainConfig(epochs=3)
    assert options.model_options(_args(train_config='{"shrink": true}')).speed_cfg is None  # run_stream: = cfg
    with pytest.raises(EvalInputError, match="--train-config: ol_residual needs residual=True"):
        options.model_options(_args(train_config='{"ol_residual": true, "residual": false}'))
    with pytest.raises(EvalInputError, match="--speed-train-config"):
        options.model_options(_args(speed_train_config='{"no_such_option": 1}'))
