"""Column checks (`Contract.accepts_columns`) agree with the compiled schema on whole documents.

Soundness is the guarantee (a proven document is valid); on documents without the cases the
column checks leave to fastjsonschema on purpose (integral floats as "integer", NaN), the
verdicts must be equal too, so the fast path is not just "never proven".
"""

from __future__ import annotations

import math
import random
from typing import Any

import pytest

from mfg_assets.settings import DEFAULT_CONTRACT
from mfg_assets.uns.contract import Contract, load_contract

TOPIC = "spBv1.0/detroit/DDATA/press1-gw/press-01"
KEYS = ("name", "alias", "timestamp", "datatype", "value", "unit")

STRICT_ITEMS = {
    "type": "object",
    "required": ["name", "datatype"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 8},
        "alias": {"type": "integer", "minimum": 0, "exclusiveMinimum": 0, "exclusiveMaximum": 100},
        "timestamp": {"type": "integer", "minimum": 1000, "maximum": 10**13},
        "datatype": {"enum": ["Double", "Float", "Int32", "String"]},
        "value": {"type": ["number", "string", "boolean"], "minimum": -100, "maximum": 100,
                  "maxLength": 5},
    },
}  # fmt: skip
STRICT = {
    "type": "object",
    "required": ["timestamp", "metrics"],
    "additionalProperties": False,
    "properties": {
        "timestamp": {"type": "integer", "minimum": 0},
        "seq": {"type": ["integer", "null"], "minimum": 0, "maximum": 255},
        "uuid": {"type": "string"},
        "metrics": {"type": "array", "minItems": 1, "maxItems": 4, "items": STRICT_ITEMS},
    },
}
TYPELESS = {
    "type": "object",
    "properties": {
        "metrics": {
            "type": "array",
            "items": {
                "properties": {
                    "value": {"minimum": 0, "exclusiveMaximum": 50.5, "minLength": 2},
                    "unit": True,
                    "alias": False,
                }
            },
        }
    },
}
NOT_PROVABLE = {
    "pattern on a metric key": {
        "type": "object",
        "properties": {
            "metrics": {"type": "array", "items": {"properties": {"name": {"pattern": "^m"}}}}
        },
    },
    "allOf around the document": {
        "allOf": [{"type": "object"}],
        "properties": {"metrics": {"type": "array", "items": {}}},
    },
    "uniqueItems": {"properties": {"metrics": {"type": "array", "uniqueItems": True}}},
}


def _contract(schema: dict[str, Any]) -> Contract:
    return load_contract(
        {
            "asyncapi": "3.0.0",
            "info": {"title": "columns", "version": "1"},
            "channels": {
                "device": {
                    "address": "spBv1.0/{group}/{kind}/{node}/{device}",
                    "messages": {"data": {"contentType": "application/json", "payload": schema}},
                }
            },
        }
    )


# key -> (values every variant accepts, values some variant refuses or leaves to the schema)
POOLS: dict[str, tuple[list[Any], list[Any]]] = {
    "name": (["m", "m1", "press"], ["", "a-much-longer-name", 5, True]),
    "alias": ([1, 7, 42], [0, 99, 100, -3, 2**70, 2.0, True, "1"]),
    "timestamp": ([1_700_000_000_000, 5000], [999, 0, 10**13 + 1, -1, 2.0, "t"]),
    "datatype": (["Double", "Int32"], ["String", "Boolean", 3]),
    "value": (
        [0.5, 1, 49.75, 7],
        [-0.25, 50.5, 120.75, 2.0, math.nan, math.inf, 0, 100, 150, True, "ok", "", "toolong"],
    ),
    "unit": (["bar"], [1]),
}


def _value(rng: random.Random, key: str) -> Any:
    good, bad = POOLS[key]
    return rng.choice(good if rng.random() < 0.85 else bad)


def _columns(rng: random.Random) -> dict[str, list[Any]]:
    count = rng.randrange(0, 6)
    if rng.random() < 0.5:
        keys = ["name", "alias", "datatype", "value"]
        keys += ["timestamp"] if rng.random() < 0.5 else []
    else:
        keys = rng.sample(KEYS, rng.randrange(1, len(KEYS) + 1))
    return {
        key: [None if rng.random() < 0.05 else _value(rng, key) for _ in range(count)]
        for key in keys
    }


def _header(rng: random.Random) -> dict[str, Any]:
    header: dict[str, Any] = {
        "timestamp": rng.choice([1_700_000_000_000, 0, 1_700_000_000_000, -1, "now"]),
        "seq": rng.choice([None, 0, 7, 255, 7, 256]),
    }
    if rng.random() < 0.2:
        header["uuid"] = rng.choice(["u-1", 5])
    if rng.random() < 0.05:
        header["extra"] = 1
    return header


def _document(header: dict[str, Any], columns: dict[str, list[Any]]) -> dict[str, Any]:
    count = len(next(iter(columns.values())))
    items = [
        {key: column[i] for key, column in columns.items() if column[i] is not None}
        for i in range(count)
    ]
    return {**header, "metrics": items}


def _left_to_the_schema(columns: dict[str, list[Any]]) -> bool:
    """Values the column checks deliberately do not prove: integral floats, NaN."""
    return any(
        isinstance(v, float) and (v.is_integer() or math.isnan(v))
        for column in columns.values()
        for v in column
    )


def _verdicts(contract: Contract, seed: int) -> tuple[int, int]:
    """Check 300 random documents both ways; (proven by columns, valid by the schema)."""
    rng = random.Random(seed)
    proven = valid = 0
    for _ in range(300):
        header, columns = _header(rng), _columns(rng)
        document = _document(header, columns)
        full = contract.check(TOPIC, b"", decoded=document).ok
        fast = contract.accepts_columns(TOPIC, 0, header, "metrics", columns)
        assert full or not fast, (header, columns)  # never proves an invalid document
        if not _left_to_the_schema(columns):
            assert fast == full, (header, columns)
        proven += fast
        valid += full
    return proven, valid


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("variant", ["plant", "strict", "typeless"])
def test_column_verdicts_match_the_schema(variant: str, seed: int) -> None:
    contract = {
        "plant": lambda: load_contract(DEFAULT_CONTRACT),
        "strict": lambda: _contract(STRICT),
        "typeless": lambda: _contract(TYPELESS),
    }[variant]()
    proven, valid = _verdicts(contract, seed)
    assert proven > 0 and valid > proven // 2  # both outcomes are exercised


@pytest.mark.parametrize("name", sorted(NOT_PROVABLE))
def test_schemas_outside_the_supported_keywords_are_never_proven(name: str) -> None:
    contract = _contract(NOT_PROVABLE[name])
    columns = {"name": ["m1", "m2"], "value": [1.5, 2.5]}
    document = _document({"timestamp": 1}, columns)
    assert contract.check(TOPIC, b"", decoded=document).ok
    assert not contract.accepts_columns(TOPIC, 0, {"timestamp": 1}, "metrics", columns)


def test_plant_contract_proves_a_usual_ddata_and_respects_the_size_limit() -> None:
    contract = load_contract(DEFAULT_CONTRACT)
    columns = {
        "name": [f"m{i}" for i in range(50)],
        "alias": list(range(50)),
        "timestamp": [None] * 50,
        "datatype": ["Double"] * 50,
        "value": [i + 0.5 for i in range(50)],
    }
    header = {"timestamp": 1_700_000_000_000, "seq": 3}
    assert contract.accepts_columns(TOPIC, 700, header, "metrics", columns)
    too_large = (contract.max_payload_bytes or 0) + 1
    assert not contract.accepts_columns(TOPIC, too_large, header, "metrics", columns)
    assert not contract.accepts_columns("not/a/known/topic", 700, header, "metrics", columns)
    columns["alias"][7] = -1  # the contract says alias >= 0
    assert not contract.accepts_columns(TOPIC, 700, header, "metrics", columns)
