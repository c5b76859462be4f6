"""A LightGBM model's text as a JSON document the leak scanner reads as what it is.

``Booster.model_to_string()`` writes a tree's node counts, split features and thresholds as
lines of numbers separated by spaces (``internal_count=1808 229 138 1579 1033``). Three
such numbers in a row read like a spaced-out mobile (``138 1579 1033``) and four like a
card number, so a model file written as that text is full of what a leak scanner must
flag. As a document, each such line is its key and its numbers as a JSON list of strings
(``["internal_count", ["1808", "229", "138", "1579", "1033"]]``): every character is still
there for the scanner to read, no number is changed (the text comes back byte for byte),
and no two numbers stand side by side as a phone number written with spaces would.
"""

from __future__ import annotations

import re
from typing import Any

# a number as LightGBM writes one: an integer or a float, with an exponent or inf / nan
_NUMBER = re.compile(r"^[-+]?(?:\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|inf|nan)$")


def booster_document(text: str) -> list[Any]:
    """``text`` (a model's string) as a list: a line of two or more numbers after ``key=``
    becomes ``[key, [number, …]]``, every other line stays a string."""
    lines: list[Any] = []
    for line in text.split("\n"):
        key, eq, value = line.partition("=")
        tokens = value.split(" ") if eq else []
        if len(tokens) > 1 and all(_NUMBER.match(t) for t in tokens):
            lines.append([key, tokens])
        else:
            lines.append(line)
    return lines


def booster_text(document: list[Any] | str) -> str:
    """The model's string again from :func:`booster_document` (a string saved before
    documents is returned as it is)."""
    if isinstance(document, str):
        return document
    return "\n".join(
        line if isinstance(line, str) else f"{line[0]}={' '.join(line[1])}" for line in document
    )
