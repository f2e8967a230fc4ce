"""Verdicts: one UNS feedback message each, recorded via the broker or straight into bronze.

A verdict goes the way every plant message goes: the contract's ``predictionFeedback``
channel, the gateway's router (same checks, same bronze row), ``bronze.feedback``, then the
silver typer into ``silver.labels``. Without a broker, :func:`append_verdict` routes the one
message through the same :class:`~mfg_assets.gateway.routing.Router` and appends the batch.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import orjson
import polars as pl

from mfg_assets.gateway.commit import record_batch
from mfg_assets.gateway.replay import write_batch
from mfg_assets.gateway.routing import Router, now_ms
from mfg_assets.lake.delta import Lake
from mfg_assets.lake.names import BRONZE_FEEDBACK, SILVER_EDGE_PREDICTIONS, SILVER_LABELS
from mfg_assets.lake.registry import table
from mfg_assets.lake.silver import refine, type_labels
from mfg_assets.uns.contract import Contract
from mfg_assets.uns.topics import MessageClass, UnsTopic

CONFIRM, REJECT = "confirm", "reject"
# class labels that mean "nothing wrong" (vision's normal class is "ok")
NORMAL_LABELS = frozenset({"ok", "normal", "good", "pass"})
PLACE = ("enterprise", "site", "area", "line", "cell")
# one prediction: where, which edge, which model, which input
PREDICTION_KEY = (*PLACE, "edge_id", "model", "source_id")


class VerdictRefused(ValueError):
    """A verdict the contract refuses (the reason says which field and why)."""


@dataclass(frozen=True)
class Verdict:
    enterprise: str
    site: str
    area: str
    line: str
    cell: str
    edge_id: str
    model: str
    source_id: str
    bundle_id: str
    verdict: str  # "confirm", "reject" or a class label
    operator_id: str
    timestamp_ms: int
    comment: str | None = None

    @property
    def topic(self) -> str:
        place = (self.enterprise, self.site, self.area, self.line, self.cell)
        return str(UnsTopic(*place, self.edge_id, MessageClass.FEEDBACK))

    def payload(self) -> bytes:
        doc: dict[str, Any] = {
            "timestamp": self.timestamp_ms,
            "sourceId": self.source_id,
            "model": self.model,
            "bundleId": self.bundle_id,
            "verdict": self.verdict,
            "operatorId": self.operator_id,
        }
        if self.comment:
            doc["comment"] = self.comment
        return orjson.dumps(doc)


def verdict_for(prediction: dict[str, Any], verdict: str, operator_id: str,
                comment: str | None = None, timestamp_ms: int | None = None) -> Verdict:
    """A verdict on a ``silver.edge_predictions`` row (its place, edge, model, bundle)."""
    return Verdict(
        **{name: prediction[name] for name in PLACE},
        edge_id=prediction["edge_id"], model=prediction["model"],
        source_id=prediction["source_id"], bundle_id=prediction["bundle_id"],
        verdict=verdict.strip(), operator_id=operator_id.strip(),
        timestamp_ms=now_ms() if timestamp_ms is None else timestamp_ms,
        comment=comment.strip() if comment and comment.strip() else None,
    )


def check_verdict(contract: Contract, verdict: Verdict) -> None:
    """Refuse, before anything is written or sent, what the gateway would quarantine."""
    try:
        topic = verdict.topic
    except ValueError as exc:  # a place or edge that is no UNS segment
        raise VerdictRefused(str(exc)) from None
    result = contract.check(topic, verdict.payload())
    if result.errors:
        raise VerdictRefused("; ".join(result.errors))
    if result.channel is None or result.channel.id != "predictionFeedback":
        raise VerdictRefused(f"{topic} is not the contract's feedback channel")


def append_verdict(lake: Lake, contract: Contract, verdict: Verdict, source: str = "mfg label",
                   ) -> str:
    """Route the verdict like the gateway does and append it to bronze; returns the batch id."""
    check_verdict(contract, verdict)
    router = Router(contract, source=source, enterprise=verdict.enterprise)
    router.route(verdict.topic, verdict.payload(), now_ms())
    batch = router.take(f"label-{uuid.uuid4().hex[:16]}")
    write_batch(lake, batch)
    record_batch(lake, batch)
    return batch.batch_id


def publish_verdict(broker_url: str, contract: Contract, verdict: Verdict,
                    timeout_s: float = 10.0) -> None:
    """Publish the verdict to the plant broker (QoS 1), for the gateway to land it."""
    import paho.mqtt.client as mqtt

    from mfg_assets.uns.broker import configure_client, parse_broker_url

    check_verdict(contract, verdict)
    broker = parse_broker_url(broker_url)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                         client_id=f"mfg-label-{uuid.uuid4().hex[:8]}", protocol=mqtt.MQTTv5)
    configure_client(client, broker)
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        info = client.publish(verdict.topic, verdict.payload(), qos=1)
        info.wait_for_publish(timeout=timeout_s)
        if not info.is_published():
            raise TimeoutError(f"broker {broker.host}:{broker.port} did not acknowledge the "
                               f"verdict within {timeout_s:g} s")
    finally:
        client.disconnect()
        client.loop_stop()


def read_labels(lake: Lake) -> pl.DataFrame:
    """Every verdict: ``silver.labels`` plus bronze feedback not yet refined into silver."""
    spec = table(SILVER_LABELS)
    frames = [lake.read(spec)] if lake.exists(spec) else []
    bronze = table(BRONZE_FEEDBACK)
    if lake.exists(bronze):
        raw = lake.read(bronze)
        if raw.height:
            frames.append(refine(spec, type_labels(raw), run_id="labeling").valid)
    if not frames:
        return spec.empty()
    return pl.concat(frames).unique(subset=list(spec.key), keep="first", maintain_order=True)


def current_labels(labels: pl.DataFrame) -> pl.DataFrame:
    """The latest verdict on each prediction (an operator may correct an earlier one)."""
    return (labels.sort("ts", "operator_id")
            .unique(subset=list(PREDICTION_KEY), keep="last", maintain_order=True))


def flagged_expr() -> pl.Expr:
    """A prediction is a flag when its score is above its threshold (edge.predictor)."""
    return (pl.col("score") > pl.col("threshold")).fill_null(False)


def truth_expr(verdict: str = "verdict", flagged: str = "flagged") -> pl.Expr:
    """What a verdict says about the input: True fault/defect, False normal, null unknown.

    ``confirm`` keeps the prediction's own answer, ``reject`` turns it round (a rejected
    flag is a false alarm, a rejected pass a missed fault); a class label is a fault unless
    it names the normal class.
    """
    v = pl.col(verdict).str.to_lowercase()
    return (pl.when(v == CONFIRM).then(pl.col(flagged))
            .when(v == REJECT).then(~pl.col(flagged))
            .when(v.is_in(list(NORMAL_LABELS))).then(pl.lit(False))
            .when(v.is_not_null()).then(pl.lit(True))
            .otherwise(pl.lit(None, pl.Boolean)))


def judged_predictions(predictions: pl.DataFrame, labels: pl.DataFrame) -> pl.DataFrame:
    """Predictions with their current verdict: ``flagged``, ``verdict``, ``truth``,
    ``operator_id``, ``labelled_at`` (inner join: only judged predictions)."""
    latest = current_labels(labels).select(
        *PREDICTION_KEY, "verdict", "operator_id", pl.col("ts").alias("labelled_at"))
    return (predictions.with_columns(flagged_expr().alias("flagged"))
            .join(latest, on=list(PREDICTION_KEY), how="inner", nulls_equal=True)
            .with_columns(truth_expr().alias("truth")))


def find_prediction(lake: Lake, edge_id: str, source_id: str, model: str | None = None
                    ) -> dict[str, Any]:
    """The ``silver.edge_predictions`` row a verdict is about (the latest, if re-scored)."""
    spec = table(SILVER_EDGE_PREDICTIONS)
    if not lake.exists(spec):
        raise VerdictRefused("no silver.edge_predictions yet: give --place and --bundle")
    rows = lake.scan(spec).filter(
        (pl.col("edge_id") == edge_id) & (pl.col("source_id") == source_id))
    if model is not None:
        rows = rows.filter(pl.col("model") == model)
    found = rows.sort("ts").collect()
    if found.height == 0:
        raise VerdictRefused(f"no prediction of edge {edge_id!r} on {source_id!r}"
                             + (f" by model {model!r}" if model else ""))
    if found.get_column("model").n_unique() > 1:
        models = ", ".join(sorted(found.get_column("model").unique().to_list()))
        raise VerdictRefused(f"edge {edge_id!r} scored {source_id!r} with several models "
                             f"({models}): name one with --model")
    return found.row(-1, named=True)
