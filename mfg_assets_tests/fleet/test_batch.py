"""fleet.batch without Dagster: export once per version, score a day through the edge's
Predictor, the edge's window ids, the edge's latest prediction joined; a range of days read
once and replaced in one Delta commit; images decoded once each, on a pool, in order.

The model registry here is a stand-in that hands out a small untrained autoencoder per
machine type (MLflow and a trained champion are covered by defs/test_predictions.py); the
lake, the ONNX export and the scoring are the real ones.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace

import numpy as np
import polars as pl
import pytest
import torch

from mfg_assets.edge.windows import CompletedWindow
from mfg_assets.fleet import batch
from mfg_assets.lake.registry import table
from mfg_assets.ml.anomaly import TypeAutoencoder

DAY = date(2026, 11, 3)
COLUMNS = {"welder": ["current__mean", "current__std", "voltage__mean"],
           "press": ["force__mean", "force__max"]}


class StandInRegistry:
    """What exported_model asks of the MLflow registry: a champion and its model."""

    def __init__(self) -> None:
        torch.manual_seed(0)
        self.nets = {t: TypeAutoencoder(len(c), 8, 2).eval() for t, c in COLUMNS.items()}
        self.loads = 0

    def champion(self, name: str):
        return SimpleNamespace(version="3")

    def load(self, module, version, dst):
        self.loads += 1
        info = {"machine_types": {t: {"columns": c, "threshold": 0.8}
                                  for t, c in COLUMNS.items()}}
        return SimpleNamespace(net=self.nets.__getitem__), info


def windows(n: int = 30, start: datetime | None = None) -> pl.DataFrame:
    start = start or datetime.combine(DAY, datetime.min.time(), UTC) - timedelta(minutes=50)
    rng = np.random.default_rng(1)
    rows = []
    for i in range(n):
        machine, kind = [("weld-01", "welder"), ("press-01", "press"), ("robot-1", "robot")][i % 3]
        ts = start + timedelta(minutes=10 * (i // 3))
        row = {"machine_id": machine, "machine_type": kind, "window_start": ts,
               "window_end": ts + timedelta(minutes=10), "n_samples": 60,
               "is_fault": bool(i % 4 == 0) if i % 5 else None}
        for c in (*COLUMNS["welder"], *COLUMNS["press"]):
            row[c] = float(rng.normal(5, 1)) if c in COLUMNS.get(kind, ()) else None
        rows.append(row)
    return pl.DataFrame(rows)


@pytest.fixture
def lake_with_windows(lake):
    frame = windows()
    lake.overwrite(table("features.sensor_windows"), frame)
    return lake, frame


def test_every_edge_served_family_has_a_predictions_table():
    assert set(batch.batch_families()) >= {"sensor_anomaly", "vision_defect"}
    for family in batch.batch_families():
        assert batch.predictions_table(family).partition_by == "date"


def test_a_day_of_windows_is_scored_like_the_edge_scores_them(lake_with_windows, tmp_path):
    lake, frame = lake_with_windows
    registry = StandInRegistry()
    model = batch.exported_model(registry, "sensor_anomaly", cache_dir=tmp_path / "onnx")
    assert (model.version, model.cached, set(model.parts)) == ("3", False, set(COLUMNS))
    again = batch.exported_model(registry, "sensor_anomaly", cache_dir=tmp_path / "onnx")
    assert again.cached and registry.loads == 1  # exported once per version

    # an edge scored one welder window twice (a newer bundle later) and one press window
    mine = frame.filter(pl.col("window_start").dt.date() == DAY)
    weld = mine.filter(pl.col("machine_type") == "welder").row(0, named=True)
    press = mine.filter(pl.col("machine_type") == "press").row(0, named=True)
    ms = {r["machine_id"]: int(r["window_start"].timestamp() * 1000) for r in (weld, press)}
    ids = {m: CompletedWindow(m, "", t, 60, np.zeros(1), True).source_id for m, t in ms.items()}
    spec = table("silver.edge_predictions")
    published = weld["window_end"] + timedelta(seconds=2)
    base = {"date": published.date(), "enterprise": "acme", "site": "detroit", "area": "body",
            "line": "weld1", "cell": "cell01", "ingest_batch_id": "t", "edge_id": "edge-weld1",
            "model": "sensor_anomaly", "threshold": 0.5, "latency_ms": 1.0}
    lake.append(spec, pl.DataFrame([
        {**base, "ts": published, "source_id": ids["weld-01"], "bundle_id": "b1",
         "value": "true", "score": 9.0},
        {**base, "ts": published + timedelta(minutes=1), "source_id": ids["weld-01"],
         "bundle_id": "b2", "value": "false", "score": 0.1},
        {**base, "ts": published, "source_id": ids["press-01"], "bundle_id": "b2",
         "value": "false", "score": 0.2},
        {**base, "ts": published, "source_id": ids["press-01"], "bundle_id": "b2",
         "value": "true", "score": 0.2, "model": "vision_defect"},  # another model's
    ], schema=spec.polars_schema))

    outcome = batch.predict_day(lake, model, DAY, batch_size=4)
    rows = lake.read_partition(batch.predictions_table("sensor_anomaly"), DAY).sort("ts")
    known = mine.filter(pl.col("machine_type") != "robot")
    assert rows.height == outcome.scored == known.height
    assert outcome.unscored == {"machine type robot unknown to the model": mine.height -
                                known.height}
    # the previous day's windows stay out of this day's partition
    assert rows.get_column("ts").dt.date().unique().to_list() == [DAY]
    # scores are the torch nets' own, through ONNX
    for kind, nets_rows in known.group_by("machine_type"):
        x = batch.window_matrix(nets_rows, COLUMNS[kind[0]])
        with torch.no_grad():
            expected = registry.nets[kind[0]](torch.from_numpy(x)).numpy()
        ids_of = nets_rows.select(pl.concat_str("machine_id", pl.lit("/"), pl.col(
            "window_start").dt.epoch("ms").cast(pl.String))).to_series()
        got = rows.filter(pl.col("source_id").is_in(ids_of.implode())).sort("ts")
        np.testing.assert_allclose(got.get_column("score").to_numpy(), expected, rtol=1e-4,
                                   atol=1e-5)
        assert got.get_column("decision").to_list() == [
            "true" if s > 0.8 else "false" for s in got.get_column("score").to_list()]
    # the edge's latest prediction of the same window, by the id the edge publishes
    joined = rows.filter(pl.col("bundle_id").is_not_null()).sort("asset_id")
    assert joined.select("asset_id", "bundle_id", "edge_decision").rows() == [
        ("press-01", "b2", "false"), ("weld-01", "b2", "false")]
    assert outcome.with_edge == 2
    truth = rows.get_column("truth").drop_nulls().unique().sort().to_list()
    assert set(truth) <= {"false", "true"}

    # re-running the day replaces it, with a threshold of the caller's choice
    batch.predict_day(lake, model, DAY, threshold=-1.0)
    rerun = lake.read_partition(batch.predictions_table("sensor_anomaly"), DAY)
    assert rerun.height == rows.height and set(rerun.get_column("decision")) == {"true"}


def test_no_champion_is_a_clear_error(tmp_path):
    class Empty:
        def champion(self, name):
            return None

    with pytest.raises(ValueError, match="no champion yet"):
        batch.exported_model(Empty(), "sensor_anomaly", cache_dir=tmp_path)


def days_of_windows(first: date, days: int, per_day: int = 9) -> pl.DataFrame:
    """``per_day`` windows (three machines) on each of ``days`` days from ``first``."""
    return pl.concat([windows(per_day, datetime.combine(first + timedelta(days=d),
                                                        datetime.min.time(), UTC))
                      for d in range(days)])


def test_a_range_of_days_is_one_read_and_one_commit(lake, tmp_path):
    first = DAY - timedelta(days=1)
    frame = days_of_windows(first, 5)  # DAY-1 .. DAY+3
    lake.overwrite(table("features.sensor_windows"), frame)
    model = batch.exported_model(StandInRegistry(), "sensor_anomaly", cache_dir=tmp_path / "o")
    target = batch.predictions_table("sensor_anomaly")
    before = batch.predict_day(lake, model, first, batch_size=4)  # a day outside the range
    assert before.write.version == 0

    days = [DAY, DAY + timedelta(days=1), DAY + timedelta(days=2)]
    outcome = batch.predict_days(lake, model, [d.isoformat() for d in reversed(days)],
                                 batch_size=4)
    assert outcome.write.version == lake.version(target) == 1  # one commit for three days
    commit = lake.table(target).history(1)[0]
    assert commit["operationParameters"]["predicate"].count("2026-11") == 2  # a date range
    written = lake.read(target)
    known = frame.filter(pl.col("machine_type") != "robot")
    for d in days:
        on_day = known.filter(pl.col("window_start").dt.date() == d).height
        assert on_day > 0
        assert written.filter(pl.col("date") == d).height == on_day
        assert outcome.per_day[d.isoformat()] == on_day
    # the day before the range kept its rows; the day after it was never scored
    assert written.filter(pl.col("date") == first).height == before.scored > 0
    assert written.filter(pl.col("date") == DAY + timedelta(days=3)).height == 0
    assert outcome.rows == frame.filter(pl.col("window_start").dt.date().is_in(days)).height

    # non-contiguous days: the day between them is neither read nor replaced
    lake.overwrite(table("features.sensor_windows"), frame.filter(
        pl.col("window_start").dt.date() != DAY))  # DAY's windows are gone now
    gap = batch.predict_days(lake, model, [DAY, DAY + timedelta(days=2)], threshold=-1.0)
    assert gap.per_day == {DAY.isoformat(): 0, (DAY + timedelta(days=2)).isoformat(): 3 * 2}
    after = lake.read(target)
    assert after.filter(pl.col("date") == DAY).height == 0  # replaced by nothing
    middle = after.filter(pl.col("date") == DAY + timedelta(days=1))
    assert middle.height == written.filter(pl.col("date") == DAY + timedelta(days=1)).height
    assert set(middle.get_column("threshold")) == {0.8}  # untouched by the second run


def test_feature_chunks_stream_the_range_in_bounded_chunks(lake):
    frame = days_of_windows(DAY, 4, per_day=30)
    lake.overwrite(table("features.sensor_windows"), frame)
    days = [DAY + timedelta(days=1), DAY + timedelta(days=3)]
    chunks = list(batch.feature_chunks(lake, "sensor_anomaly", days, None,
                                       ["window_start", "machine_id", "nope"], rows=7))
    assert all(c.height == 7 for c in chunks[:-1]) and 0 < chunks[-1].height <= 7
    got = pl.concat(chunks)
    assert got.columns == ["window_start", "machine_id"]  # only what was asked for
    expected = frame.filter(pl.col("window_start").dt.date().is_in(days))
    assert sorted(got.rows()) == sorted(expected.select(got.columns).rows())


def image_features(n: int, size: int) -> pl.DataFrame:
    import io

    from PIL import Image

    rng = np.random.default_rng(5)
    start = datetime.combine(DAY, datetime.min.time(), UTC)
    pngs = []
    for i in range(n):
        side = size if i % 5 else size + 6  # a few images need resizing, as on the edge
        out = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (side, side), dtype=np.uint8)).save(out, "PNG")
        pngs.append(out.getvalue())
    return pl.DataFrame({
        "image_id": [f"img-{i}" for i in range(n)], "camera_id": ["cam-01"] * n,
        "unit_id": [None] * n, "ts": [start + timedelta(minutes=7 * i) for i in range(n)],
        "width": [size] * n, "height": [size] * n,
        "label": [["ok", "scratch"][i % 2] for i in range(n)], "png": pngs,
        "split": ["test"] * n}, schema_overrides={"unit_id": pl.String})


def test_images_are_decoded_once_each_on_a_pool_and_scored_in_order(lake, tmp_path,
                                                                     monkeypatch):
    from mfg_assets.ml.vision import DefectNet

    torch.manual_seed(0)
    classes = ["dent", "ok", "scratch"]
    folder = batch.export_to_folder(
        "vision_defect", "1", DefectNet(len(classes), 4).eval(),
        {"image_size": 16, "mode": "multiclass", "classes": classes, "normal_class": "ok"},
        tmp_path / "onnx")
    model = batch.load_folder(folder, "vision_defect")
    frame = image_features(23, 16)
    lake.overwrite(table("features.image_dataset"), frame)

    decoded: list[bytes] = []
    threads: set[str] = set()
    real = batch.read_png

    def counting(png: bytes) -> np.ndarray:
        import threading

        decoded.append(png)
        threads.add(threading.current_thread().name)
        return real(png)

    monkeypatch.setattr(batch, "read_png", counting)
    outcome = batch.predict_days(lake, model, [DAY], batch_size=5, decode_threads=3)
    assert outcome.scored == frame.height
    assert sorted(decoded) == sorted(frame.get_column("png").to_list())  # once each
    assert threads and all(t.startswith("png-decode") for t in threads)  # off the main thread

    # each row's score is the edge's own for that image (order kept through the pool)
    edge = model.predictor("")
    rows = lake.read_partition(batch.predictions_table("vision_defect"), DAY)
    by_id = dict(zip(frame.get_column("image_id"), frame.get_column("png"), strict=True))
    for source_id, score, decision in rows.select("source_id", "score", "decision").rows():
        expected = edge.predict_image(by_id[source_id])
        assert abs(score - expected.score) < 1e-5 and decision == expected.value


def test_rows_matrix_is_window_matrix_of_the_masked_rows():
    frame = windows(12).with_columns(pl.col("current__mean").cast(pl.Int64, strict=False))
    columns = ["current__mean", "voltage__mean", "force__mean", "not_in_table"]
    mask = pl.col("machine_type") == "welder"
    got = batch.rows_matrix(frame, columns, frame.select(mask).to_series())
    expected = batch.window_matrix(frame.filter(mask), columns)
    assert got.dtype == np.float32 and got.flags["C_CONTIGUOUS"]
    assert got.shape == (4, 4) and np.isnan(got[:, 2:]).all()  # press column, absent column
    np.testing.assert_array_equal(got, expected)


def test_windows_of_mixed_and_missing_types_keep_their_own_scores(lake, tmp_path):
    frame = days_of_windows(DAY, 1, per_day=12).with_columns(
        pl.when(pl.int_range(pl.len()) == 5).then(pl.lit("oven"))
        .otherwise(pl.col("machine_type")).alias("machine_type"))  # a press window -> oven
    lake.overwrite(table("features.sensor_windows"), frame)
    model = batch.exported_model(StandInRegistry(), "sensor_anomaly", cache_dir=tmp_path / "o")
    outcome = batch.predict_day(lake, model, DAY, batch_size=3)
    assert outcome.unscored == {"machine type robot unknown to the model": 3,
                                "machine type oven unknown to the model": 1}
    rows = lake.read_partition(batch.predictions_table("sensor_anomaly"), DAY)
    assert rows.height == outcome.scored == 8
    assert rows.select("ts", "source_id").rows() == sorted(rows.select("ts", "source_id").rows())
    for kind in ("welder", "press"):
        mine = frame.filter(pl.col("machine_type") == kind)
        scores, decisions = model.predictor(kind).decide_arrays(
            batch.window_matrix(mine, COLUMNS[kind]))
        got = batch.window_ids(mine).with_columns(score=pl.Series(scores),
                                                  decision=pl.Series(decisions.tolist()))
        joined = rows.join(got, on="source_id", suffix="_edge")
        assert joined.height == mine.height
        np.testing.assert_allclose(joined["score"], joined["score_edge"], rtol=1e-6)
        assert joined["decision"].to_list() == joined["decision_edge"].to_list()
        assert (joined["threshold"] == 0.8).all()


def test_a_range_over_the_row_budget_is_scored_in_spans_like_one_pass(lake, tmp_path):
    frame = days_of_windows(DAY, 6, per_day=12)  # 8 scored windows a day (no robot model)
    lake.overwrite(table("features.sensor_windows"), frame)
    model = batch.exported_model(StandInRegistry(), "sensor_anomaly", cache_dir=tmp_path / "o")
    target = batch.predictions_table("sensor_anomaly")
    days = [DAY + timedelta(days=d) for d in range(6)]
    now = datetime(2026, 12, 1, tzinfo=UTC)
    whole = batch.predict_days(lake, model, days, batch_size=5, now=now)
    assert (whole.spans, whole.write.version) == (1, 0)  # within the default budget
    one_pass = lake.read(target).sort("ts", "source_id")

    # 12 feature rows a day and a budget of 30: spans of two whole days, a commit each
    assert batch.plan_spans(lake, "sensor_anomaly", days, None, 30) == [
        days[0:2], days[2:4], days[4:6]]
    spans = batch.predict_days(lake, model, days, batch_size=5, now=now, span_rows=30)
    assert spans.spans == 3
    assert [w.version for w in spans.writes] == [1, 2, 3]
    history = lake.table(target).history(3)
    assert sorted(c["mfg.days"] for c in history) == [
        f"{days[k]}..{days[k + 1]} (2)" for k in (0, 2, 4)]  # each day replaced once
    assert (spans.write.version, spans.write.rows) == (3, one_pass.height)
    assert (spans.rows, spans.scored, spans.per_day) == (whole.rows, whole.scored,
                                                         whole.per_day)
    assert spans.unscored == whole.unscored
    in_spans = lake.read(target).sort("ts", "source_id")
    assert in_spans.height == one_pass.height == 6 * 8
    assert in_spans.equals(one_pass)

    # a retry rewrites the same days: same rows, nothing doubled
    batch.predict_days(lake, model, days, batch_size=5, now=now, span_rows=30)
    assert lake.read(target).sort("ts", "source_id").equals(one_pass)

    # a day above the budget is a span of its own; gaps and empty days stay in their spans
    picked = [days[0], days[2], days[3], DAY + timedelta(days=9)]
    assert batch.plan_spans(lake, "sensor_anomaly", picked, None, 10) == [
        [days[0]], [days[2]], [days[3], DAY + timedelta(days=9)]]
    assert batch.rows_per_day(lake, "sensor_anomaly", picked, None) == {
        days[0]: 12, days[2]: 12, days[3]: 12}
    assert batch.rows_at_most(lake, "sensor_anomaly", picked, None) == frame.height
    assert batch.rows_at_most(lake, "sensor_anomaly", [DAY - timedelta(days=3)], None) == 0


def test_assembly_images_are_scored_like_the_edge_detection_predictor(lake, tmp_path):
    from mfg_assets.edge.predictor import Predictor
    from mfg_assets.fleet.bundles import BundleSettings, EdgeProfile, _prepare_detection
    from mfg_assets.ml import detection
    from mfg_assets_tests.edge.helpers import PLACE
    from mfg_assets_tests.ml.detection_model import small_boards, small_detector

    assert "part_detection" in batch.batch_families()
    detection.save(small_detector(), tmp_path / "model")
    net, info = detection.load(tmp_path / "model")
    model = batch.load_folder(batch.export_to_folder(
        "part_detection", "2", net, info, tmp_path / "onnx"), "part_detection")
    assert model.parts[""].threshold == info["threshold"]

    # a few boards on DAY; two lose their slot annotation (truth from the label then), one
    # has neither
    start = datetime.combine(DAY, datetime.min.time(), UTC)
    every = small_boards()
    boards = pl.concat([every.filter(pl.col("label") == "ok").head(8),
                        every.filter(pl.col("label") == "missing_part").head(4)]).with_columns(
        ts=pl.Series([start + timedelta(minutes=13 * k) for k in range(12)]),
        missing=pl.when(pl.int_range(pl.len()).is_in([1, 2, 3])).then(None)
        .otherwise(pl.col("missing")),
        label=pl.when(pl.int_range(pl.len()) == 3).then(None)
        .when(pl.int_range(pl.len()) == 2).then(pl.lit("scratch"))  # all its parts still on
        .otherwise(pl.col("label")))
    assert set(boards.get_column("label").drop_nulls()) == {"ok", "missing_part", "scratch"}
    lake.overwrite(table("features.assembly_images"), boards)

    outcome = batch.predict_days(lake, model, [DAY], batch_size=5, decode_threads=2)
    rows = lake.read_partition(batch.predictions_table("part_detection"), DAY)
    assert rows.height == outcome.scored == boards.height

    # the edge's detection predictor, from the bundle export of the same champion
    class Registry:
        def load(self, module, champion, path):
            return module.load(tmp_path / "model")

    profile = EdgeProfile("edge-asm01", "assembly", PLACE, ("asm-cam01",), "registration")
    export, preprocessing, _, _ = _prepare_detection(
        Registry(), detection, None, small_boards(), profile, tmp_path / "edge",
        BundleSettings())
    assert preprocessing == model.parts[""].preprocessing
    edge = Predictor.from_files(export.path, preprocessing, model.parts[""].threshold)
    by_id = {r["image_id"]: r for r in boards.iter_rows(named=True)}
    decisions = set()
    for source_id, score, decision, expected_truth in rows.select(
            "source_id", "score", "decision", "truth").rows():
        board = by_id[source_id]
        expected = edge.predict_image(board["png"])
        assert abs(score - expected.score) < 1e-5 and decision == expected.value
        decisions.add(decision)
        if board["missing"] is not None:  # annotated slots: "[]" is a complete board
            assert expected_truth == ("ok" if board["missing"] == "[]" else "missing_part")
        else:  # the image label: missing_part, or ok for any other; null: not known
            assert expected_truth == {"missing_part": "missing_part", None: None}.get(
                board["label"], "ok")
    assert decisions == {"ok", "missing_part"}
    assert rows.get_column("truth").value_counts().sort("truth").rows() == [
        (None, 1), ("missing_part", 4), ("ok", 7)]
