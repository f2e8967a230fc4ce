"""Compile an AsyncAPI 2.6 / 3.x document with MQTT channels into a fast message validator.

The contract answers, for every message seen on the broker: which channel does this topic
belong to, with which parameters, and does the payload (and the MQTT v5 user properties)
match one of the messages declared for that channel?

    contract = load_contract("uns/asyncapi/main/asyncapi.yaml")
    channel, message_name, errors = contract.validate("plant/hh/line/L1/telemetry", payload)

All the expensive work happens once, in ``load_contract``: ``$ref`` resolution (jsonref),
trait merging, schema compilation (fastjsonschema, draft-07) and topic-pattern compilation.
``validate``/``check`` then cost one LRU lookup, one decode and one compiled-function call.
Error codes are listed in :mod:`.validate`. One module per job:

* :mod:`.load`      reading the document, ``$ref``s and traits, AsyncAPI 2.x/3.x channels
* :mod:`.schema`    flattening and compiling JSON Schemas, running a compiled check
* :mod:`.match`     topic -> channel address and parameters
* :mod:`.validate`  :class:`Contract`: decode and check one message
* :mod:`.columns`   column checks (an array of objects proven valid per key)
* :mod:`.decoders`  content types and registered payload decoders
* :mod:`.model`     Channel, Message, CheckResult, ContractError

This package re-exports the public names; import private helpers from their module.
"""

from mfg_assets.uns.contract.decoders import (
    is_json_content_type,
    normalize_content_type,
    register_decoder,
    unregister_decoder,
)
from mfg_assets.uns.contract.load import DEFAULT_MAX_PAYLOAD_BYTES, load_contract
from mfg_assets.uns.contract.model import (
    Channel,
    CheckResult,
    ContractError,
    Decoder,
    Message,
)
from mfg_assets.uns.contract.validate import Contract

__all__ = [
    "DEFAULT_MAX_PAYLOAD_BYTES",
    "Channel",
    "CheckResult",
    "Contract",
    "ContractError",
    "Decoder",
    "Message",
    "is_json_content_type",
    "load_contract",
    "normalize_content_type",
    "register_decoder",
    "unregister_decoder",
]
