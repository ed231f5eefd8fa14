"""Text normalisation that makes term matching resist case and Unicode look-alikes."""

from __future__ import annotations

import unicodedata

# Hand-written, not Unicode's TR39 skeleton: TR39 also rewrites plain ASCII (m -> rn,
# 0 -> O), so the operator's ASCII regular expressions would stop matching. This map only
# sends non-Latin letters that render like a Latin letter to that letter. Fullwidth forms,
# mathematical alphanumerics, circled letters and ligatures are handled by NFKD before it.
_CONFUSABLES = str.maketrans({
    # Cyrillic capitals, then small letters
    "А": "A", "В": "B", "С": "C", "Е": "E", "Н": "H", "І": "I", "Ј": "J", "К": "K",
    "М": "M", "О": "O", "Р": "P", "Ѕ": "S", "Т": "T", "Х": "X", "У": "Y", "Ү": "Y",
    "а": "a", "с": "c", "ԁ": "d", "е": "e", "һ": "h", "і": "i", "ј": "j", "к": "k",
    "ӏ": "l", "о": "o", "р": "p", "ԛ": "q", "ѕ": "s", "у": "y", "ԝ": "w", "х": "x",
    # Greek capitals, then small letters
    "Α": "A", "Β": "B", "Ε": "E", "Ζ": "Z", "Η": "H", "Ι": "I", "Κ": "K", "Μ": "M",
    "Ν": "N", "Ο": "O", "Ρ": "P", "Τ": "T", "Υ": "Y", "Χ": "X",
    "α": "a", "β": "b", "γ": "y", "ε": "e", "η": "n", "ι": "i", "κ": "k", "ν": "v",
    "ο": "o", "ρ": "p", "τ": "t", "υ": "u", "χ": "x",
    # Latin letters outside ASCII that NFKD leaves alone, and Armenian look-alikes
    "ı": "i", "ɩ": "i", "ɑ": "a", "ɡ": "g", "ø": "o", "đ": "d", "ł": "l", "ħ": "h",
    "օ": "o", "ս": "u", "ց": "g", "հ": "h", "ո": "n",
})

#: Character categories removed outright: combining marks (accents, overlays such as the
#: strike-through U+0336) and format characters (zero-width space/joiners, word joiner,
#: soft hyphen, BOM, bidi controls, tag characters).
_DROPPED_CATEGORIES = frozenset({"Mn", "Me", "Cf"})


def normalize_text(text: str) -> str:
    """The form prompts are matched in: compatibility-decomposed, marks and invisible
    characters removed, look-alike letters mapped to Latin, case-folded, whitespace runs
    collapsed to one space. Regular expressions should be written for this form
    (lower-case ASCII)."""
    decomposed = unicodedata.normalize("NFKD", text)
    kept = "".join(c for c in decomposed if unicodedata.category(c) not in _DROPPED_CATEGORIES)
    return " ".join(kept.translate(_CONFUSABLES).casefold().split())
