"""Property tests of the validation layer: whatever arrives, only typed ApiErrors come out.

Pure logic (no server, no torch): the request-body parser, the config models and the Accept
negotiation are fed arbitrary JSON values, bytes and header text by hypothesis.
"""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server.api.accept import ResponseFormat, negotiate
from server.api.body import parse_job_json
from server.errors import ApiError, InvalidRequest, NotAcceptable, ValidationFailed
from server.jobs.types import JOB_TYPES, lookup
from server.wire.base import MAX_SEED, JobBody, parse_model
from server.wire.models import DevKontextConfig

DEV = "inference.flux-fast.dev-kontext.img2img.v1"
PROPERTY = settings(max_examples=200, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow])

json_scalars = st.none() | st.booleans() | st.integers() | st.text() | \
    st.floats()
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner,
                                                                max_size=5),
    max_leaves=30,
)
config_keys = st.sampled_from(sorted(DevKontextConfig.model_fields)) | st.text(max_size=10)
#: Configs that look almost right: real field names, arbitrary values.
near_configs = st.dictionaries(config_keys, json_values, max_size=8)

valid_configs = st.fixed_dictionaries(
    {"prompt": st.text(min_size=3, max_size=200).filter(lambda t: 3 <= len(t) <= 4096)},
    optional={
        "width": st.sampled_from(range(512, 1041, 16)),
        "height": st.sampled_from(range(512, 1041, 16)),
        "steps": st.integers(1, 50),
        "guidance_scale": st.floats(1, 10),
        "seed": st.integers(0, MAX_SEED),
        "progressive": st.booleans(),
        "style_preset": st.sampled_from(
            DevKontextConfig.model_json_schema()["properties"]["style_preset"]["anyOf"][0]
            ["enum"]),
    },
)


@PROPERTY
@given(json_values)
def test_any_json_value_as_body_raises_only_typed_errors(value):
    try:
        body = parse_job_json(json.dumps(value).encode(), where="body")
    except (InvalidRequest, ValidationFailed) as exc:
        assert exc.status == 400 and exc.message
        assert exc.field is not None
    else:
        assert isinstance(body, JobBody) and isinstance(value, dict)


@PROPERTY
@given(st.binary(max_size=300))
def test_any_bytes_as_body_raise_only_typed_errors(raw):
    try:
        parse_job_json(raw, where="job")
    except ApiError as exc:
        assert exc.status == 400
        assert exc.message.startswith(("job", "type", "config", exc.field or "\0"))


@settings(PROPERTY, max_examples=100)  # each example builds a nested config: keep it brisk
@given(st.sampled_from([DEV, "inference.nope", ""]) | st.text(max_size=40), near_configs)
def test_any_job_reaches_a_typed_outcome(job_type, config):
    """The route's whole validation chain: parse the body, look up the type, the config."""
    raw = json.dumps({"type": job_type, "config": config}).encode()
    try:
        body = parse_job_json(raw, where="body")
        parsed = parse_model(lookup(body.type).config_model, body.config, "config")
    except ApiError as exc:
        assert 400 <= exc.status < 500, exc
        assert exc.message.startswith(("body", "type", "config")), exc.message
    else:
        assert job_type in JOB_TYPES and parsed is not None


@PROPERTY
@given(json_values)
def test_any_value_as_dev_config_raises_only_validation_failed(value):
    try:
        config = parse_model(DevKontextConfig, value, "config")
    except ValidationFailed as exc:
        assert exc.status == 400
        # The message names the field (config or config.<name>) and then the rule.
        assert exc.message.startswith("config") and ": " in exc.message
    else:
        assert isinstance(config, DevKontextConfig)


@PROPERTY
@given(valid_configs)
def test_valid_configs_round_trip(sent):
    config = parse_model(DevKontextConfig, sent, "config")
    echoed = config.model_dump(exclude_none=True)
    # Every field sent is echoed unchanged, and defaults are filled in.
    assert {key: echoed[key] for key in sent} == {
        key: float(v) if key == "guidance_scale" else v for key, v in sent.items()}
    assert set(echoed) >= {"prompt", "width", "height", "steps", "guidance_scale", "seed"}
    # The echoed config is itself a valid config that parses to the same thing.
    assert parse_model(DevKontextConfig, json.loads(json.dumps(echoed)), "config") == config


@PROPERTY
@given(st.text(max_size=300))
def test_negotiate_any_text_raises_only_not_acceptable(accept):
    try:
        fmt = negotiate(accept)
    except NotAcceptable as exc:
        assert exc.status == 406 and exc.message.startswith("Accept: ")
        assert len(exc.message) < 400  # the header is quoted, but not all of it
    else:
        assert isinstance(fmt, ResponseFormat)


media = st.sampled_from(["image/jpeg", "image/png", "image/webp", "image/jpg", "*/*", "image/*",
                         "multipart/form-data", "multipart/*", "application/json", "text/html",
                         "application/xml", ""])
params = st.lists(st.sampled_from(["q=0", "q=0.5", "q=1", "q=abc", "image/png", "image/webp",
                                   "quality=90", "charset=utf-8", "", "q=", "="]), max_size=3)


@PROPERTY
@given(st.lists(st.tuples(media, params), min_size=1, max_size=4))
def test_negotiate_header_shaped_text(ranges):
    accept = ", ".join(";".join([m, *p]) for m, p in ranges)
    try:
        fmt = negotiate(accept)
    except NotAcceptable:
        return
    assert fmt.container in ("raw", "multipart", "json")
    assert fmt.image in ("jpeg", "png", "webp")


#: JSON text that parses but cannot be written back: numbers past a double, lone surrogates.
raw_leaves = st.sampled_from(["1e400", "-1E+999", '"\\ud800"', '"a\\udfffb"', "1", '"ok"',
                              "null", "2.5", '"\\ud83d\\ude00"'])
raw_keys = st.sampled_from(['"prompt"', '"width"', '"loras"', '"\\udc00"', '"x"'])
raw_json = st.recursive(
    raw_leaves,
    lambda inner: st.lists(inner, max_size=4).map(lambda items: f"[{','.join(items)}]")
    | st.lists(st.tuples(raw_keys, inner), max_size=4).map(
        lambda pairs: "{" + ",".join(f"{key}:{value}" for key, value in pairs) + "}"),
    max_leaves=12)


@PROPERTY
@given(raw_json)
def test_unrepresentable_json_is_refused_naming_where_or_renders(config_text):
    raw = f'{{"type": "{DEV}", "config": {config_text}}}'.encode()
    try:
        body = parse_job_json(raw, where="body")
    except ApiError as exc:
        assert exc.status == 400 and exc.field
        exc.message.encode("utf-8")  # the answer naming it can be written
    else:
        # What is accepted can be echoed as strict JSON, in UTF-8.
        json.dumps(body.config, allow_nan=False, ensure_ascii=False).encode("utf-8")
