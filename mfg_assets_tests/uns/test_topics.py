import pytest

from mfg_assets.uns.topics import (
    MessageClass,
    TopicError,
    UnsTopic,
    check_segment,
    parse_topic,
    topic_filter,
)


def test_parse_and_format_round_trip():
    topic = "acme/detroit/body/weld1/cell01/weld-01/sensors"
    parsed = parse_topic(topic)
    assert parsed == UnsTopic(
        "acme", "detroit", "body", "weld1", "cell01", "weld-01", MessageClass.SENSORS
    )
    assert str(parsed) == topic
    assert parsed.path == ("acme", "detroit", "body", "weld1", "cell01", "weld-01")


@pytest.mark.parametrize(
    ("topic", "reason"),
    [
        ("acme/detroit/body/weld1/cell01/sensors", "has 6 levels"),
        ("acme/detroit/body/weld1/cell01/weld-01/smells", "expected one of"),
        ("acme/detroit/../weld1/cell01/weld-01/sensors", "not a valid UNS segment"),
        ("acme/detroit/body/weld1/cell 01/weld-01/sensors", "not a valid UNS segment"),
        ("acme/+/body/weld1/cell01/weld-01/sensors", "not a valid UNS segment"),
    ],
)
def test_bad_topics_say_why(topic, reason):
    with pytest.raises(TopicError, match=reason):
        parse_topic(topic)


def test_filters_use_wildcards_for_unnamed_levels():
    assert topic_filter(site="detroit", message_class="sensors") == "+/detroit/+/+/+/+/sensors"
    with pytest.raises(TopicError):
        topic_filter(line="weld#1")


@pytest.mark.parametrize(
    "segment",
    [
        ".",
        "..",
        "...",
        "weld-01\n",
        "cell 01",
        " cell01",
        "cell01\t",
        "a\x00b",
        "a\x7fb",
        "%2F",
        "weld%2F01",
        "a%00",
        "",
        "-weld",
        "_x",
        "a" * 65,
        "wéld",
        "a/b",
        "+",
        "#",
    ],
)
def test_segments_refuse_traversal_blanks_control_and_percent(segment):
    with pytest.raises(TopicError):
        check_segment("cell", segment)


@pytest.mark.parametrize("segment", ["weld-01", "v1.2", "cell_01", "A", "9" * 64, "a..b"])
def test_segments_keep_dots_dashes_and_underscores_inside(segment):
    assert check_segment("cell", segment) == segment
