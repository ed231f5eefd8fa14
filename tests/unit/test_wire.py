"""Validation of the dev-kontext config: defaults, boundaries, and messages naming field+rule."""

import pytest
from pydantic import ValidationError

from server.errors import ValidationFailed
from server.jobs.types import JOB_TYPES
from server.wire.base import MAX_RANDOM_SEED, MAX_SEED, parse_model
from server.wire.models import DevKontextConfig


def parse(**config):
    return parse_model(DevKontextConfig, {"prompt": "make the sky stormy", **config}, "config")


def rejects(message: str, **config) -> None:
    with pytest.raises(ValidationFailed) as caught:
        parse(**config)
    assert caught.value.status == 400
    assert str(caught.value) == message


def test_defaults_are_filled_in_and_echoed():
    config = parse().model_dump(exclude_none=True)
    assert config["width"] == config["height"] == 1024
    assert config["steps"] == 30
    assert config["guidance_scale"] == 2.5
    assert config["progressive"] is False
    assert 0 <= config["seed"] <= MAX_RANDOM_SEED
    assert "style_preset" not in config


def test_random_seeds_differ_and_stay_exact_in_javascript():
    seeds = {parse().seed for _ in range(20)}
    assert len(seeds) > 1
    assert max(seeds) < 2**53


def test_seed_zero_is_a_seed():
    assert parse(seed=0).seed == 0


@pytest.mark.parametrize("value", [512, 528, 544, 1024, 1040])
def test_sizes_in_range_accepted(value):
    # 512–1040 in multiples of 16: the superset of both readings of the hosted docs.
    assert parse(width=value, height=value).width == value


@pytest.mark.parametrize(("value", "message"), [
    (1041, "config.width: must be a multiple of 16, got 1041"),
    (1056, "config.width: must be at most 1040, got 1056"),
    (520, "config.width: must be a multiple of 16, got 520"),
])
def test_sizes_off_the_rule_are_refused_naming_it(value, message):
    rejects(message, width=value)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("width", 1000, "config.width: must be a multiple of 16, got 1000"),
        ("width", 480, "config.width: must be at least 512, got 480"),
        ("height", 1056, "config.height: must be at most 1040, got 1056"),
        ("steps", 0, "config.steps: must be at least 1, got 0"),
        ("steps", 51, "config.steps: must be at most 50, got 51"),
        ("guidance_scale", 0.5, "config.guidance_scale: must be at least 1, got 0.5"),
        ("guidance_scale", 10.5, "config.guidance_scale: must be at most 10, got 10.5"),
        ("seed", -1, "config.seed: must be at least 0, got -1"),
        ("seed", MAX_SEED + 1, f"config.seed: must be at most {MAX_SEED}, got {MAX_SEED + 1}"),
        ("width", "1024", "config.width: must be an integer, got '1024'"),
        ("steps", 2.5, "config.steps: must be an integer, got 2.5"),
        ("progressive", "yes", "config.progressive: must be true or false, got 'yes'"),
        ("prompt", "ab", "config.prompt: must be at least 3 characters, got 2"),
        ("prompt", "x" * 4097, "config.prompt: must be at most 4096 characters, got 4097"),
        ("prompt", 42, "config.prompt: must be a string, got 42"),
        ("safety_tolerance", 2, "config.safety_tolerance: unknown field"),
    ],
)
def test_invalid_values_name_the_field_and_rule(field, value, message):
    rejects(message, **{field: value})


def test_style_preset_must_be_known():
    pattern = r"config\.style_preset: must be one of .*'pixel-art'.*got 'watercolour'"
    with pytest.raises(ValidationFailed, match=pattern):
        parse(style_preset="watercolour")


def test_prompt_is_required():
    with pytest.raises(ValidationFailed, match=r"config\.prompt: is required"):
        parse_model(DevKontextConfig, {}, "config")


def test_integral_guidance_is_a_number():
    assert parse(guidance_scale=3).guidance_scale == 3.0


def test_prompt_boundaries_accepted():
    assert parse(prompt="abc").prompt == "abc"
    assert len(parse(prompt="y" * 4096).prompt) == 4096


def test_the_engine_shape_plan_covers_every_accepted_size():
    # pipelines/engine/warmup.py warms up (and, compiled, proves no recompile) for OUTPUT_SIDES:
    # it must list exactly the sides the wire model accepts.
    from pipelines.engine.warmup import OUTPUT_SIDES

    accepted = []
    for side in range(0, 2048):
        try:
            DevKontextConfig.model_validate({"prompt": "abc", "width": side})
        except ValidationError:
            continue
        accepted.append(side)
    assert tuple(accepted) == OUTPUT_SIDES


@pytest.mark.parametrize("job_type", sorted(JOB_TYPES))
def test_include_messages_is_accepted_on_every_job_type_and_echoed(job_type):
    # The AI SDK's generateText adds it to every config; the hosted API accepts it.
    model = JOB_TYPES[job_type].config_model
    config = parse_model(model, {"prompt": "abc", "include_messages": True}, "config")
    assert config.model_dump(exclude_none=True)["include_messages"] is True
    assert "include_messages" not in parse_model(model, {"prompt": "abc"}, "config"
                                                 ).model_dump(exclude_none=True)


@pytest.mark.parametrize(("ratio", "size"), [("1:1", (1024, 1024)), ("16:9", (1040, 592)),
                                             ("4:5", (832, 1040)), ("21:9", (1040, 512))])
def test_aspect_ratio_picks_a_size_within_the_rules(ratio, size):
    config = parse(aspect_ratio=ratio)
    assert (config.width, config.height) == size


def test_aspect_ratio_with_a_size_is_refused_naming_the_field():
    rejects("config.aspect_ratio: cannot be combined with width or height",
            aspect_ratio="1:1", width=512)
    rejects("config.aspect_ratio: must be W:H with positive integers, between 21:9 and 9:21"
            ", got '3:1'", aspect_ratio="3:1")


def test_a_pro_txt2img_size_is_its_shape_and_names_its_rule():
    from server.wire.hosted import HostedTxt2ImgConfig

    def txt(**config):
        return parse_model(HostedTxt2ImgConfig, {"prompt": "abc", **config}, "config")

    assert txt(width=1024, height=768).aspect_ratio == "4:3"
    assert txt().aspect_ratio == "1:1"
    for config, message in [
        ({"width": 1024}, "config.height: width and height go together"),
        ({"width": 1920, "height": 256},
         "config.width: width:height must be between 21:9 and 9:21, got 15:2"),
        ({"width": 512, "height": 512, "aspect_ratio": "1:1"},
         "config.aspect_ratio: cannot be combined with width or height"),
    ]:
        with pytest.raises(ValidationFailed) as caught:
            txt(**config)
        assert str(caught.value) == message
