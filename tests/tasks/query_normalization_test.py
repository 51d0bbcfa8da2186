"""The release's query normalisation (`normalize_text.normalize`), character class by character class."""

import pytest
import tensorflow as tf

from class_jax.tasks import text_inputs

CASES = {
    "controls dropped": ("a\u0001b\u0008c\u000ed\u000fe\u0011f\u001bg", "abcdefg"),
    "tab, newline, U+0010, U+001C kept": ("a\tb\nc\u0010d\u001ce", "a\tb\nc\u0010d\u001ce"),
    "vertical tab, form feed, next line to space": ("a\u000bb\u000cc\u0085d", "a b c d"),
    "hyphens and dashes": ("\u2010\u2011\u2012\u2013\u2014\u2015\u2043", "-------"),
    "minuses": ("\u2212\u207b\uff0d-", "----"),
    "soft hyphen removed": ("co\u00adop\u00ader\u00adate", "cooperate"),
    "double quotes": ("\u201ca\u201d \u201eb\u201f", '"a" "b"'),
    "single quotes": ("\u2018a\u2019 \u201ab\u201b", "'a' 'b'"),
    "apostrophes": ("\u055a\ua78b\ua78c\uff07", "''''"),
    "accents": ("\u0060a\u00b4", "'a'"),
    "primes": ("\u2032\u2035|\u2033\u2036|\u2034\u2037|\u2057", "''|''''|''''''|''''"),
    "ellipsis": ("wait\u2026", "wait..."),
    "spaced ellipsis closed up": ("so . . . then", "so ... then"),
    "slashes": ("1\u20442 a\u2215b", "1/2 a/b"),
    "tildes kept (the release leaves them)": ("\u02dc\u223c\u301c\uff5e", "\u02dc\u223c\u301c\uff5e"),
    "other text untouched": ("Qui était Marie Curie ? 東京 — 2", "Qui était Marie Curie ? 東京 - 2"),
}


@pytest.mark.parametrize("text,expected", CASES.values(), ids=CASES.keys())
def test_normalize_query(text, expected):
    assert text_inputs.normalize_query(text) == expected


def test_tensorflow_normalisation_equals_python():
    texts = [text for text, _ in CASES.values()] + ["".join(text_inputs.QUERY_CHARACTER_MAP) + " . . . . . . "]
    got = text_inputs.normalize_query_tf(tf.constant(texts)).numpy()
    assert [g.decode("utf-8") for g in got] == [text_inputs.normalize_query(t) for t in texts]


class _CharVocabulary:
    """One id per character (enough to see what the tokeniser was given)."""

    eos_id = 1

    def encode(self, s):
        return [ord(c) for c in s]

    def encode_tf(self, s):
        return tf.strings.unicode_decode(s, "UTF-8")


def test_query_ids_normalise_only_when_asked():
    vocabulary = _CharVocabulary()
    question = "l\u2019\u00e9t\u00e9\u2026"
    assert text_inputs.query_ids(vocabulary, question) == [ord(c) for c in "question: " + question]
    normalized = [ord(c) for c in "question: l'été..."]
    assert text_inputs.query_ids(vocabulary, question, normalize=True) == normalized
    assert text_inputs.query_batch(vocabulary, [question], 30, normalize=True)[0, :len(normalized)].tolist() == \
        normalized
    assert text_inputs.query_ids_tf(vocabulary, tf.constant(question), normalize=True).numpy().tolist() == normalized
