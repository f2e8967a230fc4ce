"""Sparkplug B 3.0: topic namespace, payload encode/decode and host-side session state.

Plain functions and classes only: no MQTT client, no Dagster. The MQTT subscriber feeds
``(topic, payload)`` pairs into :class:`SparkplugSession`; contract validation uses
:func:`decode_for_contract`. One module per job:

* :mod:`.topics`     the ``spBv1.0`` topic namespace (format, parse, check ids)
* :mod:`.datatypes`  the DataType enum and what the decoder and encoder share
* :mod:`.decode`     payload bytes -> JSON-able documents (the document format is described there)
* :mod:`.columns`    plain DATA metrics as columns (the gateway's fast path)
* :mod:`.encode`     Python values -> payload bytes; the rebirth command
* :mod:`.session`    host session: births, aliases, seq/bdSeq, online state, rebirth requests

This package re-exports the public names; import private helpers from their module.
"""

from mfg_assets.uns.sparkplug.columns import MetricColumns
from mfg_assets.uns.sparkplug.datatypes import DataType, SparkplugDecodeError
from mfg_assets.uns.sparkplug.decode import (
    CONTENT_TYPE,
    decode_for_contract,
    decode_payload,
    register_contract_decoder,
)
from mfg_assets.uns.sparkplug.encode import (
    REBIRTH_METRIC,
    Metric,
    MetricLike,
    datatype_code,
    encode_payload,
    now_ms,
    rebirth_command,
)
from mfg_assets.uns.sparkplug.session import BDSEQ_METRIC, SessionEvent, SparkplugSession
from mfg_assets.uns.sparkplug.topics import (
    DEVICE_MESSAGE_TYPES,
    MESSAGE_TYPES,
    NAMESPACE,
    NODE_MESSAGE_TYPES,
    STATE,
    SparkplugTopic,
    check_id,
    format_topic,
    parse_topic,
)

__all__ = [
    "BDSEQ_METRIC",
    "CONTENT_TYPE",
    "DEVICE_MESSAGE_TYPES",
    "MESSAGE_TYPES",
    "NAMESPACE",
    "NODE_MESSAGE_TYPES",
    "REBIRTH_METRIC",
    "STATE",
    "DataType",
    "Metric",
    "MetricColumns",
    "MetricLike",
    "SessionEvent",
    "SparkplugDecodeError",
    "SparkplugSession",
    "SparkplugTopic",
    "check_id",
    "datatype_code",
    "decode_for_contract",
    "decode_payload",
    "encode_payload",
    "format_topic",
    "now_ms",
    "parse_topic",
    "rebirth_command",
    "register_contract_decoder",
]
