"""The batch path's combiner stage in rounds: every device's next reading at once, each device's in order.

A polled batch interleaves devices. Round ``r`` holds the ``r``-th reading of every device present in the
batch; the rounds run one after the other, so each device's readings meet its combiner, pending forecasts
and lag window in their order, exactly as reading by reading (what one device does never depends on
another's: only on its own earlier readings). Per round, the context stack's two linear-model steps are
done for all its devices at once by an :class:`~model_contract.online_linear_bank.OnlineLinearBank` (one numpy
call per step instead of one per device and step; bit-equal to each model alone):

1. learn: :func:`~edge_app.steps.check` each device's pending forecast against its reading; the combiners
   that learn it take the guard's half (``learn_row``), the bank updates their linear models, then the rest
   (``learned``; a combiner whose weights went non-finite is replaced: :func:`~edge_app.steps.learned`);
2. forecast: each combiner's first half (``prepare``: its row and the guard's verdict), the bank forecasts
   every row, then the second half (``finish``); the pending forecast moves on (:func:`~edge_app.steps.move_on`).

A round of one device (one reading in the batch, or one device in all) calls the combiner as the per-record
path does. With the compiled kernel (:mod:`~model_contract.online_linear_kernel`: one C call per model and step)
the batch path does not come here: the split around a bank cost more than it saved (5 devices, combiner
18.1-18.7 µs a record alone vs 22.4-24.1 together), and so did these rounds' second pass over the batch
(:func:`edge_app.batch_path._combine_in_order` instead; BENCHMARKS.md, issue 18).
Whatever crosses devices or reaches the outside (accuracy totals, drift alarms and their early
window closes, the interval band's anomaly events, the window spool) is left to the caller, in reading order.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from confluent_kafka import KafkaException

from edge_app.kafka_io import DeliveryFailed
from edge_app.steps import blend, check, learned, move_on, pending_of, restart_window
from model_contract.online_linear_bank import OnlineLinearBank

_isfinite = math.isfinite


def combine(
    app: Any, staged: list, rows: np.ndarray, b_list: list, s_list: list, speed_version: str, bank: OnlineLinearBank
) -> dict:
    """Learn and forecast every staged reading ``(msg, reading, state, gap, row or -1)`` of a batch (the speed
    model the same for all of it). Returns, per ``id(msg)``, ``(pending, errors, same_speed, weights at
    scoring, forecasts, made, weights)`` or the exception that reading raised."""
    rounds: list[list] = []
    seen: dict = {}  # device state -> its readings so far in this batch
    for item in staged:
        k = seen.get(item[2], 0)
        seen[item[2]] = k + 1
        if k == len(rounds):
            rounds.append([])
        rounds[k].append(item)
    step = _Round(app, rows, b_list, s_list, speed_version, bank)
    out: dict = {}
    for items in rounds:
        if len(items) == 1:
            for item in items:
                step.alone(item, out)
        else:
            step.together(items, out)
    return out


class _Round:
    """One batch's rounds: what every round needs, and the two ways to run one."""

    def __init__(self, app: Any, rows: np.ndarray, b_list: list, s_list: list, speed_version: str, bank) -> None:  # noqa: ANN001
        self.app, self.rows, self.b_list, self.s_list = app, rows, b_list, s_list
        self.speed_version, self.bank, self.horizon = speed_version, bank, app.spec.horizon

    def alone(self, item: tuple, out: dict) -> None:
        """A device alone in its round: as the per-record path."""
        msg, r, state, gap, j = item
        app, horizon, speed_version = self.app, self.horizon, self.speed_version
        try:
            if gap:
                restart_window(state, horizon)
            pending = state.pending  # the forecasts made for this reading
            errors, same_speed = check(state, r.target, speed_version)
            if same_speed:
                state.combiner.learn_one(pending.batch, pending.speed, r.target, pending.context)
                learned(app, state)
            scored = state.combiner.weights
            if j >= 0:
                fc, made = blend(state, self.b_list[j], self.s_list[j], self.rows[j], speed_version, horizon)
            else:
                fc, made = blend(state, 0.0, 0.0, None, speed_version, horizon)
            out[id(msg)] = (pending, errors, same_speed, scored, fc, made, state.combiner.weights)
        except (DeliveryFailed, KafkaException):
            raise
        except Exception as exc:
            out[id(msg)] = exc

    def together(self, items: list, out: dict) -> None:
        """Several devices: each combiner's halves in turn, the context stacks' linear models by the bank."""
        app, horizon, speed_version, bank = self.app, self.horizon, self.speed_version, self.bank
        b_list, s_list, rows = self.b_list, self.s_list, self.rows
        n = len(items)
        got: list = [None] * n  # [pending, errors, same_speed, scored weights] or the exception
        # 1. learn: the guards' halves, the linear models together, the rest
        group = []  # (position, combiner, row, truth, pending)
        for i, (_msg, r, state, gap, _j) in enumerate(items):
            try:
                if gap:
                    restart_window(state, horizon)
                pending = state.pending
                errors, same_speed = check(state, r.target, speed_version)
                got[i] = [pending, errors, same_speed, None]
                if same_speed:
                    c = state.combiner
                    if c.uses_window:  # a context stack (model_contract.context_stack.ContextStack)
                        x = c.learn_row(pending.batch, pending.speed, r.target, pending.context)
                        if x is not None:
                            group.append((i, c, x, float(r.target), pending))
                    else:
                        c.learn_one(pending.batch, pending.speed, r.target, pending.context)
            except (DeliveryFailed, KafkaException):
                raise
            except Exception as exc:
                got[i] = exc
        if group:
            try:
                bank.learn([g[1].model for g in group], np.concatenate([g[2] for g in group]), [g[3] for g in group])
            except Exception as exc:  # a bug: every reading of the group fails, as each would alone
                for g in group:
                    got[g[0]] = exc
            for i, c, _x, y, p in group:
                if not isinstance(got[i], Exception):
                    try:
                        c.learned(p.batch, p.speed, y, p.context)
                    except Exception as exc:
                        got[i] = exc
        # 2. forecast: the first halves, the linear models together, the second halves
        group = []  # (position, combiner, guard verdict, b, s)
        for i, (_msg, _r, state, _gap, j) in enumerate(items):
            g = got[i]
            if isinstance(g, Exception):
                continue
            try:
                if g[2]:
                    learned(app, state)
                g[3] = state.combiner.weights
                c = state.combiner
                if j >= 0 and c.uses_window and _isfinite(b_list[j]) and _isfinite(s_list[j]):
                    group.append((i, c, c.prepare(b_list[j], s_list[j], rows[j]), b_list[j], s_list[j]))
                elif j >= 0:
                    g.extend(blend(state, b_list[j], s_list[j], rows[j], speed_version, horizon))
                else:
                    g.extend(blend(state, 0.0, 0.0, None, speed_version, horizon))
            except (DeliveryFailed, KafkaException):
                raise
            except Exception as exc:
                got[i] = exc
        if group:
            try:
                fs = bank.predict([g[1].model for g in group], np.concatenate([g[1].model_row for g in group]))
            except Exception as exc:
                fs = [exc] * len(group)
            for (i, c, verdict, b, s), f in zip(group, fs, strict=True):
                try:
                    if isinstance(f, Exception):
                        raise f
                    h = c.finish(f, verdict, b, s)
                    fc = (b, s, h)
                    made = pending_of(c, b, s, h, speed_version)
                    move_on(items[i][2], fc, made, horizon)
                    got[i].extend((fc, made))
                except Exception as exc:
                    got[i] = exc
        for i, item in enumerate(items):
            g = got[i]
            if isinstance(g, Exception):
                out[id(item[0])] = g
            else:
                pending, errors, same_speed, scored, fc, made = g
                out[id(item[0])] = (pending, errors, same_speed, scored, fc, made, item[2].combiner.weights)
