"""The wire rules of multi-reference [dev] jobs, without a server: the job-type table's input
counts, their messages, the `reference_method` field and the token budget setting."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from pipelines.references.plan import (
    DEFAULT_REFERENCE_METHOD,
    DEFAULT_REFERENCE_TOKEN_BUDGET,
    MAX_INPUT_IMAGES,
    MIN_REFERENCE_TOKEN_BUDGET,
)
from server.errors import InvalidInputImage, ValidationFailed
from server.jobs.prepared import require_inputs
from server.jobs.types import DEV_KONTEXT, JOB_TYPES, lookup
from server.settings import Settings
from server.wire.base import parse_model
from server.wire.hosted import MAX_TXT2IMG, PRO_IMG2IMG
from server.wire.models import DevKontextConfig


def test_the_table_says_how_many_images_each_type_takes():
    counts = {name: (row.min_inputs, row.max_inputs) for name, row in JOB_TYPES.items()}
    assert counts[DEV_KONTEXT] == (1, MAX_INPUT_IMAGES) == (1, 4)
    assert counts[PRO_IMG2IMG] == (1, 1) and counts[MAX_TXT2IMG] == (0, 0)


@pytest.mark.parametrize(("name", "count", "message"), [
    (DEV_KONTEXT, 0, "input: inference.flux-fast.dev-kontext.img2img.v1 needs 1 input image, "
     "got none; send it as a multipart part named `input` (up to 4: the image to edit, then "
     "references)"),
    (DEV_KONTEXT, 5, "input: inference.flux-fast.dev-kontext.img2img.v1 takes at most 4 input "
     "images (the image to edit and 3 references), got 5 distinct ones"),
    (PRO_IMG2IMG, 2, "input: inference.flux-kontext.pro.img2img.v2 takes 1 input image (only "
     "the [dev] and klein job types take references), got 2 distinct ones"),
    (MAX_TXT2IMG, 1, "input: inference.flux-kontext.max.txt2img.v2 takes no input image, got "
     "1 distinct one"),
])
def test_input_counts_out_of_range_name_the_rule(name, count, message):
    with pytest.raises(InvalidInputImage) as refused:
        require_inputs(lookup(name), tuple(bytes([i]) for i in range(count)))
    assert refused.value.message == message


@pytest.mark.parametrize("count", [1, 2, 3, 4])
def test_one_to_four_images_are_a_dev_job(count):
    require_inputs(lookup(DEV_KONTEXT), tuple(bytes([i]) for i in range(count)))


def test_reference_method_defaults_and_refusal():
    config = parse_model(DevKontextConfig, {"prompt": "put it there"}, "config")
    assert config.reference_method == DEFAULT_REFERENCE_METHOD == "offset"
    assert parse_model(DevKontextConfig, {"prompt": "abc", "reference_method": "stitch"},
                       "config").reference_method == "stitch"
    with pytest.raises(ValidationFailed) as refused:
        parse_model(DevKontextConfig, {"prompt": "abc", "reference_method": "mosaic"}, "config")
    assert refused.value.message == ("config.reference_method: must be one of 'index', "
                                     "'offset' or 'stitch', got 'mosaic'")


def test_the_token_budget_setting_has_the_engine_bounds():
    assert Settings().reference_token_budget == DEFAULT_REFERENCE_TOKEN_BUDGET == 8192
    assert Settings(reference_token_budget=MIN_REFERENCE_TOKEN_BUDGET)
    with pytest.raises(ValidationError, match="reference_token_budget"):
        Settings(reference_token_budget=MIN_REFERENCE_TOKEN_BUDGET - 1)
    # The JS client sends each image twice: four images must fit the default part limit.
    assert Settings().max_input_parts == 2 * MAX_INPUT_IMAGES
