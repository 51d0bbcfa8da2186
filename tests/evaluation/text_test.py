"""Normalisation, token F1, MeCab and NLTK tokenisation as the official scorers use them."""

import warnings

import nltk
import pytest

from class_jax.evaluation import text


@pytest.mark.parametrize("answer, expected", [
    # lower -> delete ASCII punctuation ("." "," "!") -> delete 年 -> collapse spaces; "the" is kept.
    ("The U.S.A., 1990年!", "the usa 1990"),
    # Full-width punctuation is not ASCII: 「 」 、 survive.
    ("「東京」、大阪", "「東京」、大阪"),
    ("  multiple\t spaces\n", "multiple spaces"),
    # Korean year counter and the people / age counters go, wherever they are.
    ("2019년", "2019"), ("3人の20歳", "3の20"),
])
def test_normalize_xor_answer(answer, expected):
    assert text.normalize_xor_answer(answer) == expected


def test_normalize_squad_answer_removes_articles_and_punctuation():
    # "the" and "a" are whole words and go; the comma goes; "another" keeps its "an".
    assert text.normalize_squad_answer("The Beatles, a band; another") == "beatles band another"


def test_token_precision_recall_f1_hand_cases():
    # common {b, c} = 2: precision 2/3, recall 2/4, F1 = 2 * (2/3 * 1/2) / (2/3 + 1/2) = 4/7.
    precision, recall, f1 = text.token_precision_recall_f1(["a", "b", "c"], ["b", "c", "d", "e"])
    assert (precision, recall) == (pytest.approx(2 / 3), pytest.approx(0.5))
    assert f1 == pytest.approx(4 / 7)
    # Multiset overlap: one shared "x" -> precision 1/2, recall 1 -> F1 2/3.
    assert text.token_precision_recall_f1(["x", "x"], ["x"])[2] == pytest.approx(2 / 3)
    # No overlap, including two empty sides: all zero (the official rule).
    assert text.token_precision_recall_f1([], []) == (0.0, 0.0, 0.0)


def test_mecab_wakati_is_raw_tagger_output():
    # Words joined by spaces plus MeCab's trailing " \n" (the XOR-Full BLEU sees these characters).
    assert text.mecab_wakati("クリス・ヤング") == "クリス ・ ヤング \n"
    assert text.mecab_wakati("1990年") == "1990 年 \n"


def test_mecab_tagger_is_one_per_process(monkeypatch):
    first = text._wakati_tagger()  # pylint: disable=protected-access
    assert text._wakati_tagger() is first  # pylint: disable=protected-access
    # A forked child (another pid) must build its own tagger.
    monkeypatch.setattr(text.os, "getpid", lambda: -12345)
    child = text._wakati_tagger()  # pylint: disable=protected-access
    assert child is not first
    assert child.parse("東京") == "東京 \n"


def test_word_tokenize_uses_punkt_when_installed():
    text.reset_tokenizer_state_for_tests()
    assert text.punkt_available()
    assert text.official_word_tokenize("He went. She came.") == ["He", "went", ".", "She", "came", "."]


def test_punkt_lookup_fails_without_tables(monkeypatch, tmp_path):
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path)])
    text.reset_tokenizer_state_for_tests()
    try:
        assert not text.punkt_available()
    finally:
        monkeypatch.undo()
        text.reset_tokenizer_state_for_tests()


def test_word_tokenize_falls_back_line_preserving_with_one_warning(monkeypatch):
    text.reset_tokenizer_state_for_tests()
    monkeypatch.setattr(text, "punkt_available", lambda: False)
    try:
        with pytest.warns(RuntimeWarning, match="R@2kt / R@5kt may differ"):
            tokens = text.official_word_tokenize("He went. She came.")
        # Without sentence splitting the inner period stays on its word.
        assert tokens == ["He", "went.", "She", "came", "."]
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            text.official_word_tokenize("Again.")  # no second warning
    finally:
        monkeypatch.undo()
        text.reset_tokenizer_state_for_tests()
