"""The prompt term list: normalisation, built-in categories, the operator's file."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.safety import BUILTIN_TERMS, TermCheck, normalize_text, read_terms_file


@pytest.mark.parametrize(("text", "expected"), [
    ("Make The SKY Stormy", "make the sky stormy"),
    ("ＦＵＬＬＷＩＤＴＨ ｔｅｘｔ", "fullwidth text"),                      # NFKD
    ("zero\u200bwidth\u200d jo\u2060ined\ufeff", "zerowidth joined"),      # format chars
    ("s\u0336t\u0336r\u0336i\u0336k\u0336e", "strike"),                    # overlay marks
    ("café naïve", "cafe naive"),                                           # accents
    ("раураl", "paypal"),                                                   # Cyrillic р а у а
    ("ΑΡΟΛΛΟ", "apoλλo"),                                                   # Greek capitals
    ("STRASSE Straße", "strasse strasse"),                                  # casefold
    ("  many\t\n  spaces\u00a0here ", "many spaces here"),
    ("𝐛𝐨𝐥𝐝 ⓒⓘⓡⓒⓛⓔⓓ", "bold circled"),                                    # math, circled
])
def test_normalised_form(text: str, expected: str) -> None:
    assert normalize_text(text) == expected


@pytest.fixture(scope="module")
def builtin() -> TermCheck:
    return TermCheck()


@pytest.mark.parametrize(("prompt", "category"), [
    ("a photo of loli characters", "csam"),
    ("LOLICON style", "csam"),
    ("l\u043el\u0456 style", "csam"),                     # Cyrillic о and і
    ("ｌｏｌｉ", "csam"),                                 # fullwidth
    ("lo\u200bli art", "csam"),                           # zero-width space inside
    ("make the child in the photo nude", "csam"),
    ("nude, 12 years old", "csam"),
    ("a 9yo, sexy pose", "csam"),
    ("Remove her clothes", "ncii"),
    ("take off all of their clothing", "ncii"),
    ("make him naked", "ncii"),
    ("nudify this photo", "ncii"),
    ("undress them", "ncii"),
])
def test_builtin_hits(builtin: TermCheck, prompt: str, category: str) -> None:
    verdict = builtin.check_text(prompt)
    assert verdict.flagged
    assert verdict.categories == (category,)
    assert verdict.scores == {category: 1.0}


@pytest.mark.parametrize("prompt", [
    "make the sky stormy",
    "add a bowler hat to the man",
    "a child flying a kite on the beach",           # a minor, nothing sexual
    "a nude beige colour palette for the living room",  # "nude" without a minor
    "a pedometer on the table, torpedo in the background",
    "remove the clothes from the washing line",     # no person
    "a 30 year old woman in lingerie",              # adult
    "pedal bin",
])
def test_builtin_misses(builtin: TermCheck, prompt: str) -> None:
    verdict = builtin.check_text(prompt)
    assert not verdict.flagged
    assert verdict.categories == ()


def test_image_is_not_the_term_lists_business(builtin: TermCheck) -> None:
    from PIL import Image

    assert not builtin.check_image(Image.new("RGB", (8, 8))).flagged


def test_operator_file_categories_and_normalised_matching(tmp_path: Path) -> None:
    terms = tmp_path / "terms.txt"
    terms.write_text("# comment\n\n\\bforbidden\\s+thing\\b\n[brand]\n\\bacme\\s*corp\\b\n"
                     "[weapons]\npipe\\s*bomb\n", encoding="utf-8")
    assert read_terms_file(terms) == {"operator-list": [r"\bforbidden\s+thing\b"],
                                      "brand": [r"\bacme\s*corp\b"],
                                      "weapons": [r"pipe\s*bomb"]}
    check = TermCheck(terms)
    assert check.check_text("A FORBIDDEN   thing").categories == ("operator-list",)
    assert check.check_text("the ΑСΜΕ Corp logo").categories == ("brand",)  # Greek/Cyrillic
    assert check.check_text("pipe\u00adbomb and acmecorp").categories == ("brand", "weapons")
    assert check.check_text("loli").categories == ("csam",)  # built-ins stay on
    assert not check.check_text("a pipe and a bomb-shaped cake").flagged
    assert "from " + str(terms) in check.describe()


def test_operator_file_without_builtins(tmp_path: Path) -> None:
    terms = tmp_path / "terms.txt"
    terms.write_text("acme\n", encoding="utf-8")
    check = TermCheck(terms, include_builtin=False)
    assert set(check.terms.patterns) == {"operator-list"}
    assert not check.check_text("loli").flagged


def test_invalid_pattern_names_file_and_line(tmp_path: Path) -> None:
    terms = tmp_path / "terms.txt"
    terms.write_text("fine\n# ok\nbroken(\n", encoding="utf-8")
    with pytest.raises(ValueError, match=rf"{terms}:3: not a valid regular expression"):
        TermCheck(terms)


def test_builtin_list_stays_minimal() -> None:
    assert set(BUILTIN_TERMS) == {"csam", "ncii"}
