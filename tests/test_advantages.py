"""Tests for advantages.py: hand-computed numbers, arithmetic in the comments."""

import math

import pytest
import torch
from tokenizers import Tokenizer, decoders, models
from transformers import PreTrainedTokenizerFast

from advantages import (
    delta_advantages,
    group_advantages,
    group_norm_advantages,
    outcome_advantages,
    process_advantages,
    segment_spans,
    token_advantages,
)

# ----------------------------------------------------------------------------------------------------------------------
# group_advantages
# ----------------------------------------------------------------------------------------------------------------------


def test_group_advantages_scaled_hand_computed():
    # groups {1, 0} and {0, 1}: mean 0.5, sample std sqrt(((0.5)^2 + (0.5)^2) / (2 - 1)) = sqrt(0.5)
    # A = +-0.5 / (sqrt(0.5) + 1e-6) = +-0.7071
    a = group_advantages([1.0, 0.0, 0.0, 1.0], group_size=2)
    x = 0.5 / (math.sqrt(0.5) + 1e-6)
    assert a.dtype == torch.float32
    assert torch.allclose(a, torch.tensor([x, -x, -x, x]), atol=1e-7)


def test_group_advantages_sample_std_as_in_the_authors_code():
    # group {0, 0, 3}: mean 1, sample std sqrt((1 + 1 + 4) / (3 - 1)) = sqrt(3) (the population std would be sqrt(2))
    # -> x1.069 = sqrt(8 / 7) smaller advantages than the population std at G = 8
    a = group_advantages(torch.tensor([0.0, 0.0, 3.0]), group_size=3, eps=0.0)
    s = math.sqrt(3.0)
    assert torch.allclose(a, torch.tensor([-1 / s, -1 / s, 2 / s]), atol=1e-6)


def test_group_advantages_unscaled_is_centered_reward():
    # Stage II: A = r - group mean; groups {1, 0, 0, 0} (mean 0.25) and {1, 1, 1, 0} (mean 0.75)
    a = group_advantages([1, 0, 0, 0, 1, 1, 1, 0], group_size=4, scale=False)
    assert a.tolist() == [0.75, -0.25, -0.25, -0.25, 0.25, 0.25, 0.25, -0.75]


def test_zero_std_group_gives_exact_zeros():
    # every rollout scored 0.9: no signal, exact zeros. The float32 mean of three 0.9 is 0.9 - 6e-8, and a naive
    # 6e-8 / (0 + 1e-6) would give A = 0.06 instead of 0.
    a = group_advantages([0.9, 0.9, 0.9, 1.0, 0.0, 0.5], group_size=3)
    assert a[:3].tolist() == [0.0, 0.0, 0.0]
    assert not torch.isnan(a).any()
    assert group_advantages([0.7, 0.2], group_size=1).tolist() == [0.0, 0.0]  # G = 1: every group is constant


def test_group_advantages_rejects_partial_group():
    with pytest.raises(ValueError):
        group_advantages([1.0, 0.0, 1.0], group_size=2)


# ----------------------------------------------------------------------------------------------------------------------
# delta_advantages and group_norm_advantages
# ----------------------------------------------------------------------------------------------------------------------

S = [0.25, 0.75, 1.0]  # exact in binary, so == is safe below


def test_delta_eq2_hand_computed_and_sums_to_zero():
    # A_1 = s_1 - s_T = 0.25 - 1 = -0.75; A_2 = 0.75 - 0.25 = 0.5; A_3 = 1 - 0.75 = 0.25; sum = 0
    a = delta_advantages(S, mode="delta")
    assert a == [-0.75, 0.5, 0.25]
    assert sum(a) == 0.0


def test_delta_from_zero_sums_to_last_score():
    # s_0 = 0: A_1 = 0.25, A_2 = 0.5, A_3 = 0.25; sum = 1.0 = s_T
    a = delta_advantages(S, mode="delta_from_zero")
    assert a == [0.25, 0.5, 0.25]
    assert sum(a) == S[-1]


def test_end_norm_ablation():
    # A_t = s_t - s_T for t < T: 0.25 - 1, 0.75 - 1; A_T = s_T = 1
    assert delta_advantages(S, mode="end") == [-0.75, -0.25, 1.0]


def test_delta_code_equals_delta_for_long_trajectories():
    assert delta_advantages(S, mode="delta_code") == delta_advantages(S, mode="delta")


def test_single_segment_per_mode():
    # T = 1: Eq. 2 gives s_1 - s_1 = 0; the authors' code gives s_1; from-zero gives s_1; EndNorm gives s_T = s_1
    assert delta_advantages([0.5], "delta") == [0.0]
    assert delta_advantages([0.5], "delta_code") == [0.5]
    assert delta_advantages([0.5], "delta_from_zero") == [0.5]
    assert delta_advantages([0.5], "end") == [0.5]


def test_ties_and_empty():
    # constant scores: every step adds nothing
    assert delta_advantages([0.5, 0.5, 0.5], "delta") == [0.0, 0.0, 0.0]
    assert delta_advantages([0.5, 0.5, 0.5], "delta_from_zero") == [0.5, 0.0, 0.0]
    assert delta_advantages([0.5, 0.5], "end") == [0.0, 0.5]
    for mode in ("delta", "delta_code", "delta_from_zero", "end"):
        assert delta_advantages([], mode) == []


def test_unknown_mode_lists_valid_modes():
    with pytest.raises(ValueError, match="delta_from_zero"):
        delta_advantages(S, mode="bogus")


def test_group_norm_hand_computed():
    # rollout means: (0 + 1) / 2 = 0.5, 0.25, (1 + 1 + 0.25) / 3 = 0.75; baseline b = (0.5 + 0.25 + 0.75) / 3 = 0.5
    out = group_norm_advantages([[0.0, 1.0], [0.25], [1.0, 1.0, 0.25]])
    assert out == [[-0.5, 0.5], [-0.25], [0.5, 0.5, -0.25]]
    assert group_norm_advantages([[], [1.0]]) == [[], [0.0]]  # empty rollouts stay out of the baseline


# ----------------------------------------------------------------------------------------------------------------------
# token_advantages
# ----------------------------------------------------------------------------------------------------------------------


def test_token_advantages_broadcast():
    t = token_advantages([(0, 2), (2, 5)], [0.5, -1.0], length=6)
    assert t.dtype == torch.float32
    assert t.tolist() == [0.5, 0.5, -1.0, -1.0, -1.0, 0.0]  # last token in no span -> 0
    assert token_advantages([(0, 3)], [0.25], 3).tolist() == [0.25, 0.25, 0.25]  # outcome: one span
    with pytest.raises(ValueError):
        token_advantages([(0, 1)], [1.0, 2.0], 1)


# ----------------------------------------------------------------------------------------------------------------------
# segment_spans, with real Hugging Face tokenizers built here (no download)
# ----------------------------------------------------------------------------------------------------------------------

PIECES = ["a", "b", "c", "x", "\n", " ", "#", "##", "###", "###\n", " ###", "######"]


@pytest.fixture(scope="module")
def piece_tok():
    """A tokenizer whose decode concatenates these pieces; '###' is a single token here, and so are merged ones."""
    vocab = {p: i for i, p in enumerate(["<unk>"] + PIECES)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.decoder = decoders.Fuse()  # join pieces with nothing in between
    return PreTrainedTokenizerFast(tokenizer_object=tok)


def ids(tokenizer, pieces):
    return tokenizer.convert_tokens_to_ids(pieces)


def test_delimiter_as_one_token(piece_tok):
    # "ab###" | "c###" | "x": the "###" token closes each segment
    t = ids(piece_tok, ["a", "b", "###", "c", "###", "x"])
    assert segment_spans(t, piece_tok) == [(0, 3), (3, 5), (5, 6)]


def test_delimiter_split_across_tokens(piece_tok):
    # "a" "#" "##" "b" -> text "a###b"; the delimiter ends inside token 2 ("##"), so token 2 closes segment 1
    assert segment_spans(ids(piece_tok, ["a", "#", "##", "b"]), piece_tok) == [(0, 3), (3, 4)]
    # "#" "#" "#" as three tokens
    assert segment_spans(ids(piece_tok, ["a", "#", "#", "#", "b", "c"]), piece_tok) == [(0, 4), (4, 6)]


def test_delimiter_merged_with_neighbours(piece_tok):
    # "###\n" and " ###" carry the delimiter plus another character; they still close the segment
    assert segment_spans(ids(piece_tok, ["a", "###\n", "b", " ###", "c"]), piece_tok) == [(0, 2), (2, 4), (4, 5)]


def test_no_delimiter_and_empty(piece_tok):
    t = ids(piece_tok, ["a", "#", "b", "##", "c"])  # "a#b##c": never three '#' in a row
    assert segment_spans(t, piece_tok) == [(0, 5)]
    assert segment_spans([], piece_tok) == []


def test_delimiter_at_the_very_end_and_start(piece_tok):
    # "ab###": no empty trailing segment
    assert segment_spans(ids(piece_tok, ["a", "b", "###"]), piece_tok) == [(0, 3)]
    # "###ab": the leading delimiter closes a segment made of itself
    assert segment_spans(ids(piece_tok, ["###", "a", "b"]), piece_tok) == [(0, 1), (1, 3)]


def test_two_delimiters_in_one_token_make_one_cut(piece_tok):
    # "a######b": two delimiters, both end in token 1, so one cut after it
    assert segment_spans(ids(piece_tok, ["a", "######", "b"]), piece_tok) == [(0, 2), (2, 3)]


def test_spans_cover_every_token(piece_tok):
    t = ids(piece_tok, ["a", "#", "##", "#", "b", "###", "###\n", "c", " ###"])
    spans = segment_spans(t, piece_tok)
    assert spans[0][0] == 0 and spans[-1][1] == len(t)
    assert all(spans[i][1] == spans[i + 1][0] for i in range(len(spans) - 1))


def test_byte_level_token_holding_half_a_character():
    # Byte-level BPE: "é" is the bytes C3 A9, written as the pieces "Ã" and "©"; decoding "Ã" alone gives U+FFFD.
    # Text "é###x": token ends [0, 1, 2, 4, 5]; the delimiter ends at character 4, inside token 3 ("##").
    vocab = {p: i for i, p in enumerate(["Ã", "©", "#", "##", "x"])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="x"))
    tok.decoder = decoders.ByteLevel()
    hf = PreTrainedTokenizerFast(tokenizer_object=tok)
    assert hf.decode([0, 1, 2, 3, 4]) == "é###x"
    assert segment_spans([0, 1, 2, 3, 4], hf) == [(0, 4), (4, 5)]


def test_sentencepiece_style_leading_spaces():
    # Metaspace: "▁a" "▁###" "▁b" decodes to "a ### b"; each token decoded alone would lose its space, which would
    # shift every character offset. Incremental decoding keeps them: ends [1, 5, 7]; the delimiter ends at 5 (token 1).
    vocab = {p: i for i, p in enumerate(["▁a", "▁###", "▁b"])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="▁a"))
    tok.decoder = decoders.Metaspace()
    hf = PreTrainedTokenizerFast(tokenizer_object=tok)
    assert hf.decode([0, 1, 2]) == "a ### b"
    assert segment_spans([0, 1, 2], hf) == [(0, 2), (2, 3)]


# ----------------------------------------------------------------------------------------------------------------------
# One step's rollouts: outcome_advantages, process_advantages
# ----------------------------------------------------------------------------------------------------------------------


def test_outcome_advantages_truncation_and_parse_failures():
    # group 1: scores [1, 0, 0.5 (truncated -> 0), None (dropped)] -> valid rewards [1, 0, 0]: mean 1/3,
    # sample std sqrt((4/9 + 1/9 + 1/9) / 2) = sqrt(1/3):
    # A = (2/3) / sqrt(1/3) = 2/sqrt(3), (-1/3) / sqrt(1/3) = -1/sqrt(3)
    # (the authors' code would count the unparseable score as 0 and keep it: we drop it, see outcome_advantages)
    adv, keep = outcome_advantages([1.0, 0.0, 0.5, None], [False, False, True, False], group_size=4)
    assert keep == [True, True, True, False]
    assert adv[0] == pytest.approx(2 / math.sqrt(3), rel=1e-5)
    assert adv[1] == pytest.approx(-1 / math.sqrt(3), rel=1e-5) and adv[2] == pytest.approx(-1 / math.sqrt(3), rel=1e-5)
    assert adv[3] == 0.0


def test_process_advantages_modes_and_drops():
    scores = [[0.25, 0.5, 1.0], [0.5, None], [0.75, 0.25]]
    adv, keep = process_advantages(scores, [False, False, True], group_size=3, mode="delta")
    assert keep == [True, False, True]
    assert adv[0] == [0.25 - 1.0, 0.25, 0.5]  # Eq. 2: A_1 = s_1 - s_T, A_t = s_t - s_{t-1}
    assert adv[1] == [0.0, 0.0] and adv[2] == [0.0, 0.0]  # dropped; over-length -> 0
    adv, _ = process_advantages(scores, [False] * 3, group_size=3, mode="delta_from_zero")
    assert adv[0] == [0.25, 0.25, 0.5] and adv[2] == [0.75, -0.5]
    # group_norm over the kept rollouts 0 and 2: rollout means 7/12 and 1/2 -> baseline 13/24
    adv, _ = process_advantages(scores, [False] * 3, group_size=3, mode="group_norm")
    assert adv[0] == pytest.approx([0.25 - 13 / 24, 0.5 - 13 / 24, 1.0 - 13 / 24])
