import pytest

from derta_mlx.common.errors import UserError
from derta_mlx.data.refusal_token import resolve_refusal
from derta_mlx.data.segments import continuation_ids
from derta_mlx.data.templates import DERTA_EVAL, DERTA_TRAIN, get_template


@pytest.mark.parametrize(
    "family, rule, expected_id, expected_text",
    [
        ("llama3", "auto", 33386, " Sorry"),
        ("llama3", "space", 33386, " Sorry"),
        ("llama3", "official", 19701, "Sorry"),
        ("llama3", "token: sorry", 14931, " sorry"),
        ("llama3", "token:sorry", 68697, "sorry"),
        ("mistral", "auto", 19385, " Sorry"),
        ("mistral", "official", 23166, "Sorry"),
        ("mistral", "token: sorry", 7371, " sorry"),
    ],
)
def test_refusal_ids_match_the_spec(tokenizer_of, family, rule, expected_id, expected_text):
    target = resolve_refusal(tokenizer_of(family), rule)
    assert (target.token_id, target.text) == (expected_id, expected_text)


def test_variants_list_every_one_token_sorry(tokenizer_of):
    ids = {token_id for token_id, _ in resolve_refusal(tokenizer_of("llama3")).variants}
    assert {19701, 33386, 14931, 68697} <= ids
    ids = {token_id for token_id, _ in resolve_refusal(tokenizer_of("mistral")).variants}
    assert {23166, 19385, 7371} <= ids


def test_mistral_space_piece_is_the_sentencepiece_marker(tokenizer_of):
    target = resolve_refusal(tokenizer_of("mistral"), "space")
    assert target.piece == "\u2581Sorry"


def test_two_token_refusal_string_is_refused_with_its_split(tokenizer_of):
    with pytest.raises(UserError, match=r"2 tokens"):
        resolve_refusal(tokenizer_of("llama3"), "token: Unfortunately-no")
    with pytest.raises(UserError, match="single token"):
        resolve_refusal(tokenizer_of("mistral"), "token: Apologetically")


def test_phrase_rule_takes_the_first_token_in_context(tokenizer_of):
    tok = tokenizer_of("llama3")
    target = resolve_refusal(tok, "phrase: I cannot help with that")
    assert target.token_id == continuation_ids(tok, " I")[0]
    assert target.text == " I"


def test_id_rule_checks_the_range(tokenizer_of):
    assert resolve_refusal(tokenizer_of("mistral"), "id:23166").token_id == 23166
    with pytest.raises(UserError, match="outside the vocabulary"):
        resolve_refusal(tokenizer_of("mistral"), "id:99999")
    with pytest.raises(UserError, match="integer"):
        resolve_refusal(tokenizer_of("mistral"), "id:x")
    with pytest.raises(UserError, match="unknown refusal rule"):
        resolve_refusal(tokenizer_of("mistral"), "sorry-please")


def test_continuation_ids_have_no_sentencepiece_dummy_prefix(tokenizer_of):
    tok = tokenizer_of("mistral")
    # Standalone, SentencePiece would add a "▁" word start; inside an answer it must not.
    assert continuation_ids(tok, "Sorry") != continuation_ids(tok, " Sorry")
    assert tok.convert_ids_to_tokens(continuation_ids(tok, " Sorry")) == ["\u2581Sorry"]


def test_legacy_templates_keep_the_backslash():
    assert get_template("derta").prompt("q?", None) == "[INST] q? [\\INST]"
    assert get_template("derta-eval").prompt("q?", None) == "[INST] \nq?\n\n [\\INST]"
    assert DERTA_TRAIN.count("\\") == 1 and DERTA_EVAL.count("\\") == 1


def test_chat_template_uses_the_models_own(tokenizer_of):
    tok = tokenizer_of("llama3", instruct=True)
    prompt = get_template("auto", tok).prompt("Hello?", tok)
    assert "Hello?" in prompt and "<|start_header_id|>" in prompt
    base = tokenizer_of("llama3")
    assert get_template("auto", base).name == "derta"
    with pytest.raises(UserError, match="no chat template"):
        get_template("chat").prompt("Hello?", base)
