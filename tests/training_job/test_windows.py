"""Window parsing and validation: each kind of bad window is rejected with a clear message."""

from __future__ import annotations

import json

import pytest

from training_job.windows import WindowError, parse_window

from .conftest import SPEC

HEADER = "Date_time,device,Db1t_avg,Db2t_avg,Gb1t_avg,Gb2t_avg,Ot_avg"


def _csv_ts(i: int) -> str:
    return f"2017-01-14T{i // 6:02d}:{i % 6}0:00+01:00"


def _csv(n: int, start: int = 0, edit=None) -> bytes:
    lines = [HEADER]
    for i in range(start, start + n):
        row = [_csv_ts(i), "T1", *(f"{c + i * 0.1:.2f}" for c in (40, 39, 60, 61, 5))]
        if edit:
            row = edit(i, row)
        lines.append(",".join(row))
    return ("\n".join(lines) + "\n").encode()


def test_good_csv_window():
    w = parse_window(_csv(120), SPEC)
    assert (w.rows, w.device, w.first_ts) == (120, "T1", "2017-01-14T00:00:00+01:00")
    assert w.matrix.shape == (120, 5) and w.matrix[1, 4] == pytest.approx(5.1)
    assert len(w.sha256) == 64


def test_jsonl_window_and_sorting():
    recs = [{"Date_time": f"2017-01-14T00:{m:02d}:00Z", **{c: m for c in SPEC.columns}} for m in range(59, -1, -1)]
    data = "\n".join(json.dumps(r) for r in recs).encode()
    w = parse_window(data, SPEC, min_rows=60)
    assert w.first_ts == "2017-01-14T00:00:00Z" and w.matrix[:, 0].tolist() == list(range(60))


@pytest.mark.parametrize(
    ("data", "reason", "fragment"),
    [
        (_csv(120).replace(b",Gb2t_avg", b",Gb2t"), "missing_columns", "missing column(s) Gb2t_avg"),
        (_csv(120, edit=lambda i, r: r[:2] + ["abc"] + r[3:] if i == 7 else r), "non_numeric", "row 8 Db1t_avg='abc'"),
        (_csv(120, edit=lambda i, r: r[:6] + [""] if i == 3 else r), "non_numeric", "row 4 Ot_avg=''"),
        (_csv(120, edit=lambda i, r: r[:6] + ["nan"] if i == 5 else r), "not_finite", "row 6 Ot_avg='nan'"),
        (_csv(120, edit=lambda i, r: r[:3] + ["inf"] + r[4:] if i == 9 else r), "not_finite", "Db2t_avg='inf'"),
        (_csv(20), "too_few_rows", "20 rows, at least 100 needed"),
        (_csv(120, edit=lambda i, r: [_csv_ts(3)] + r[1:] if i == 4 else r), "duplicate_timestamps", "rows 4 and 5"),
        (_csv(120, edit=lambda i, r: ["yesterday"] + r[1:] if i == 2 else r), "bad_timestamp", "row 3"),
        (b"", "empty", "no content"),
        (b"\xff\xfe\x00garbage", "bad_format", "not UTF-8"),
        (HEADER.encode() + b"\n", "too_few_rows", "no rows"),
    ],
)
def test_bad_windows_are_rejected_with_a_clear_message(data, reason, fragment):
    with pytest.raises(WindowError) as err:
        parse_window(data, SPEC)
    assert err.value.reason == reason
    assert fragment in str(err.value)


def test_same_instant_with_different_offsets_is_a_duplicate():
    data = _csv(120, edit=lambda i, r: ["2017-01-13T23:00:00+00:00"] + r[1:] if i == 1 else r)
    with pytest.raises(WindowError, match="duplicate_timestamps: 1 duplicated"):
        parse_window(data, SPEC)


def test_many_bad_values_are_summarised():
    data = _csv(120, edit=lambda i, r: r[:6] + ["x"])
    with pytest.raises(WindowError, match=r"120 value\(s\) not a number: row 1 Ot_avg='x'.*\(\+115 more\)"):
        parse_window(data, SPEC)


def test_history_with_dst_duplicates_keeps_the_first_row_of_each_instant(turbine_dir):
    """turbine/train.csv relabels 02:00-02:50 as 03:00-03:50+02:00 on 2017-03-26: six repeated instants."""
    with open(turbine_dir / "train.csv") as fh:
        lines = fh.readlines()
    data = "".join([lines[0], *lines[10100:10125]]).encode()
    with pytest.raises(WindowError, match="duplicate_timestamps: 6 duplicated"):
        parse_window(data, SPEC, min_rows=10)  # windows: always rejected
    w = parse_window(data, SPEC, min_rows=10, duplicates="keep-first")
    assert w.rows == 19 and w.dropped_duplicates == 6 and w.describe()["dropped_duplicate_rows"] == 6
    assert len(set(w.timestamps)) == 19 and w.timestamps[5] == "2017-03-26T03:00:00+02:00"
    assert w.matrix[5, 0] == pytest.approx(49.630001)  # the first of the pair


def test_history_with_another_time_format_needs_and_takes_time_format():
    """Issue 16: ``train --time-format``: a history stamped ``1/1/2010 0:00`` is refused, then read."""
    header = "Date_time," + ",".join(SPEC.columns)
    rows = [
        f"1/{1 + i // 24}/2010 {i % 24}:00," + ",".join(str(float(i + j)) for j in range(len(SPEC.columns)))
        for i in range(60)
    ]
    data = ("\n".join([header, *rows]) + "\n").encode()
    with pytest.raises(WindowError, match="--time-format"):
        parse_window(data, SPEC, fmt="csv", min_rows=10)
    window = parse_window(data, SPEC, fmt="csv", min_rows=10, time_format="%m/%d/%Y %H:%M")
    assert window.timestamps[0] == "2010-01-01T00:00:00" and window.epochs[25] - window.epochs[0] == 25 * 3600


def test_the_edges_forecast_columns_are_ignored():
    """The edge spools each reading's forecasts after the spec's columns (edge_app.forecasts): the
    trainer reads columns by name, so the window trains exactly as without them."""
    from edge_app.forecasts import FORECAST_COLUMNS

    plain = _csv(60)
    lines = plain.decode().splitlines()
    extra = [f"{lines[0]},{','.join(FORECAST_COLUMNS)}"]
    extra += [f"{line},{'' if i == 0 else '5.1,5.2,5.15,b1,s1'}" for i, line in enumerate(lines[1:])]
    with_forecasts = parse_window(("\n".join(extra) + "\n").encode(), SPEC, min_rows=50)
    without = parse_window(plain, SPEC, min_rows=50)
    assert with_forecasts.rows == without.rows == 60
    assert with_forecasts.matrix.tolist() == without.matrix.tolist()
    assert with_forecasts.first_ts == without.first_ts
