"""The demo's forecast-history section: ``hybridstream results --local`` over what the windows carried,
checked against the report's own figures for the same readings (synthetic edge run, no servers)."""

from __future__ import annotations

from hybridstream.demo.forecast_history import collect, forecast_history, markdown
from hybridstream.demo.results import accuracy, error_series, unique_predictions
from tests.results.synthetic import edge_run, forecasts_records, window_objects


def test_the_history_equals_the_reports_figures(tmp_path):
    outbox, report = tmp_path / "outbox", tmp_path / "report"
    scenarios = {}
    for name, seed in (("none", 1), ("step", 2)):
        preds = edge_run(devices=("turbine-1",), n=400, seed=seed)
        for key, body in window_objects(f"pi-{name}", forecasts_records(preds)).items():
            (outbox / key).parent.mkdir(parents=True, exist_ok=True)
            (outbox / key).write_bytes(body)
        acc = accuracy(error_series(unique_predictions(preds)))
        scenarios[name] = {"approaches": {k: {"rmse": v["rmse"]} for k, v in acc.items()}, "predicted": len(preds)}
    files = collect(report, folder=outbox)
    history = forecast_history(report, scenarios, files, plot_scenario="step")
    assert history["equal_to_report"] is True and history["objects"] == len(files) == 8
    assert (report / "forecast-step.png").exists() and "--thing pi-step" in history["plot_command"]
    text = "\n".join(markdown(history))
    assert "RMSEs equal to the report's" in text and "![forecast vs actual](forecast-step.png)" in text

    scenarios["none"]["approaches"]["dynamic"]["rmse"] += 0.001  # a figure that does not match is shown as such
    assert forecast_history(report, scenarios, files)["checks"]["none"]["equal"] is False
