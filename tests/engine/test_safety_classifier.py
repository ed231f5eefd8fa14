"""The image classifier check, loaded through transformers exactly as a real one is."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from helpers.tiny_classifier import BLUE, GREY, RED, write_tiny_classifier
from PIL import Image

from pipelines.errors import WeightsError
from pipelines.safety import ImageClassifierCheck, TermCheck, Verdict, build_content_filter
from pipelines.safety.content_filter import ContentFilter


@pytest.fixture(scope="module")
def classifier_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_classifier(tmp_path_factory.mktemp("classifier") / "tiny-nsfw")


@pytest.fixture(scope="module")
def check(classifier_dir: Path) -> ImageClassifierCheck:
    return ImageClassifierCheck(str(classifier_dir))


@pytest.mark.parametrize(("color", "mode", "size", "flagged"), [
    (RED, "RGB", (320, 240), True),
    (RED, "RGBA", (257, 300), True),     # odd size, alpha channel
    (BLUE, "RGB", (320, 240), False),
    (GREY, "L", (256, 256), False),      # greyscale input
])
def test_known_images(check: ImageClassifierCheck, color, mode, size, flagged: bool) -> None:
    image = Image.new("RGB", size, color).convert(mode)
    verdict = check.check_image(image)
    assert verdict.flagged is flagged
    assert verdict.categories == (("nsfw",) if flagged else ())
    assert set(verdict.scores) == {"nsfw"}
    assert (verdict.scores["nsfw"] > 0.99) is flagged
    assert verdict.seconds > 0


def test_threshold_decides(classifier_dir: Path) -> None:
    strict = ImageClassifierCheck(str(classifier_dir), threshold=0.999)
    verdict = strict.check_image(Image.new("RGB", (256, 256), RED))
    assert not verdict.flagged  # the red score, 0.9965, is under 0.999
    assert 0.99 < verdict.scores["nsfw"] < 0.999


def test_text_is_not_the_classifiers_business(check: ImageClassifierCheck) -> None:
    assert check.check_text("anything") == Verdict()


def test_loads_a_repo_id_from_the_local_hf_cache(classifier_dir: Path, tmp_path: Path) -> None:
    snapshot = tmp_path / "hub" / "models--tests--tiny-nsfw" / "snapshots" / ("0" * 40)
    shutil.copytree(classifier_dir, snapshot)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("0" * 40)
    cached = ImageClassifierCheck("tests/tiny-nsfw", cache_dir=tmp_path / "hub")
    assert cached.check_image(Image.new("RGB", (256, 256), RED)).flagged


def test_missing_model_is_a_weights_error_pointing_to_the_readme(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match=r"not on local disk.*weights/README\.md"):
        ImageClassifierCheck("nobody/no-such-classifier", cache_dir=tmp_path / "empty-hub")
    with pytest.raises(WeightsError, match="not on local disk"):
        ImageClassifierCheck(str(tmp_path))  # a folder without a model


def test_labels_that_are_never_unsafe_are_refused(classifier_dir: Path) -> None:
    with pytest.raises(WeightsError, match=r"labels \['normal', 'nsfw'\]; none of them"):
        ImageClassifierCheck(str(classifier_dir), unsafe_labels={"violence"})
    custom = ImageClassifierCheck(str(classifier_dir), unsafe_labels={"NSFW"})
    assert custom.unsafe == {1: "nsfw"}


def test_threshold_out_of_range(classifier_dir: Path) -> None:
    with pytest.raises(ValueError, match="threshold must be in"):
        ImageClassifierCheck(str(classifier_dir), threshold=1.5)


def test_content_filter_merges_checks(classifier_dir: Path, tmp_path: Path) -> None:
    terms = tmp_path / "terms.txt"
    terms.write_text("[brand]\nacme\n", encoding="utf-8")
    content_filter = build_content_filter(model=str(classifier_dir), terms_file=terms)
    assert isinstance(content_filter, ContentFilter)
    assert [c.name for c in content_filter.checks] == ["terms", "image-classifier"]
    assert content_filter.check_text("ACME rocket").categories == ("brand",)
    assert not content_filter.check_text("make the sky stormy").flagged
    red = content_filter.check_image(Image.new("RGB", (256, 256), RED))
    assert red.flagged and red.categories == ("nsfw",)
    assert red.seconds >= red.scores["nsfw"] * 0  # measured, non-negative
    assert not content_filter.check_image(Image.new("RGB", (256, 256), BLUE)).flagged
    lines = content_filter.describe()
    assert lines[0].startswith("terms: ") and "image-classifier: " in lines[1]


def test_terms_only_filter() -> None:
    content_filter = build_content_filter(model=None)
    assert [c.name for c in content_filter.checks] == ["terms"]
    assert not content_filter.check_image(Image.new("RGB", (64, 64), RED)).flagged


def test_merge_keeps_every_category_and_the_highest_score() -> None:
    merged = Verdict.merge([Verdict(True, ("csam",), {"csam": 1.0}, 0.1),
                            Verdict(False, (), {"nsfw": 0.2}, 0.2),
                            Verdict(True, ("nsfw", "csam"), {"nsfw": 0.9}, 0.3)], seconds=0.5)
    assert merged == Verdict(True, ("csam", "nsfw"), {"csam": 1.0, "nsfw": 0.9}, 0.5)


def test_checks_share_one_interface(check: ImageClassifierCheck) -> None:
    content_filter = ContentFilter([TermCheck(), check])
    verdict = content_filter.check_text("loli")
    assert verdict.categories == ("csam",)
