"""The demo's deployment modes: which parts each mode is made of, and the on-Pi outbox's bookkeeping
(no servers: the parts that need none)."""

from __future__ import annotations

from hybridstream.demo.modes import MODES, InCloud, Mode, OnCloud, OnEdge, OnPi, Site


def _site(tmp_path) -> Site:
    return Site(servers=None, router=None, work=tmp_path, edge_s3="http://127.0.0.1:1")


def test_each_mode_is_where_it_forecasts_and_where_it_trains(tmp_path):
    assert {"edge-cloud": (OnEdge, InCloud), "edge": (OnEdge, OnPi), "cloud": (OnCloud, InCloud)} == MODES
    edge = Mode.build("edge", _site(tmp_path))
    assert (edge.inference.command, edge.training.on_pi) == ("run", True)
    assert OnCloud.command == "forward" and not OnCloud.announces_start and OnCloud.unpredictable == 1
    assert OnCloud(_site(tmp_path)).edge_config()["forward"]["max_readings"] == 2
    assert OnEdge(_site(tmp_path)).edge_config() == {} and OnEdge.no_forecasts is None


def test_the_on_pi_outbox_is_busy_until_its_windows_are_done_and_drops_one_things_backlog(tmp_path):
    pi = OnPi(_site(tmp_path))
    assert pi.windows() == {"uploader": "local", "local_root": str(pi.outbox)}
    assert pi.worker_args()[:2] == ["--watch", str(pi.outbox)]
    assert not pi.busy()
    waiting = pi.outbox / "windows" / "pi-a" / "2020" / "w1.csv"
    waiting.parent.mkdir(parents=True)
    waiting.write_text("x")
    (pi.outbox / "done").mkdir()
    (pi.outbox / "done" / "w0.csv").write_text("x")
    assert pi.busy()
    assert pi.drop_backlog("pi-b") == 0 and pi.drop_backlog("pi-a") == 1
    assert not pi.busy()


def test_a_models_window_source_finds_its_upload(tmp_path):
    uploaded = {"windows/pi-a/2020/01/01/w1.csv": 10.0, "/outbox/windows/pi-a/w2.csv": 20.0}
    cloud = InCloud.__new__(InCloud)  # upload_time needs no servers
    assert cloud.upload_time(uploaded, "s3://bucket/windows/pi-a/2020/01/01/w1.csv") == 10.0
    assert cloud.upload_time(uploaded, "/trainer/inbox/w2.csv") is None
    assert OnPi(_site(tmp_path)).upload_time(uploaded, "/trainer/inbox/w2.csv") == 20.0  # by file name
