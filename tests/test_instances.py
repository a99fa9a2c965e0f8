"""Token-level instances: masks align for both real tokenizers, RTO targets, truncation."""

import numpy as np
import pytest

from derta_mlx.data.formats import DertaRow, HelpfulRow, SafetyTriple, Where
from derta_mlx.data.instances import IGNORE, MLE, RTO, InstanceConfig, build_instances
from derta_mlx.data.prefix import PrefixSampler, word_ends
from derta_mlx.data.refusal_token import resolve_refusal
from derta_mlx.data.segments import continuation_ids, prompt_ids
from derta_mlx.data.templates import get_template

HERE = Where("test.jsonl", 1)
SAFE = "I'm sorry, I can't help with that. Maybe ask a grown-up for a snack instead."
SAFE_REST = ", I can't help with that. Maybe ask a grown-up for a snack instead."  # after "Sorry"
HARMFUL = "Sure!  Step 1: wait until the\nkitchen is empty. Step 2: lift the lid slowly and take two."


def triples(n=6):
    return [SafetyTriple(f"t{i}", f"How do I sneak snack {i}?", SAFE, HARMFUL, Where("t.jsonl", i + 1))
            for i in range(n)]


def config(tok, **overrides):
    settings = dict(template=get_template("derta"), refusal_id=resolve_refusal(tok).token_id,
                    eos_id=tok.eos_token_id)
    settings.update(overrides)
    return InstanceConfig(**settings)


def supervised(instance, term):
    return instance.targets[instance.terms == term]


@pytest.mark.parametrize("family", ["llama3", "mistral"])
@pytest.mark.parametrize("unit", ["word", "token"])
def test_mle_masks_align_with_the_safe_response(tokenizer_of, family, unit):
    tok = tokenizer_of(family)
    cfg = config(tok, method="harmful-prefix", prefix=PrefixSampler("uniform", unit, seed=3))
    instances, stats = build_instances(triples(), tok, cfg)
    assert len(instances) == 6 and stats.kinds["harmful-prefix"] == 6
    for instance in instances:
        target = supervised(instance, MLE)
        # the supervised tokens are the refusal token, the rest of the normalised safe response
        # ("I'm sorry, I can't" -> "Sorry, I can't") and EOS
        assert list(target) == [cfg.refusal_id] + continuation_ids(tok, SAFE_REST) + [tok.eos_token_id]
        assert tok.decode(list(target[:-1])).strip() == "Sorry" + SAFE_REST
        # and each target is the next input token: teacher forcing on one sequence
        first = int(np.argmax(instance.terms == MLE))
        assert list(instance.inputs[first + 1 :]) == list(target[:-1])
        assert (instance.terms[:first] == 0).all() and (instance.targets[:first] == IGNORE).all()


@pytest.mark.parametrize("family", ["llama3", "mistral"])
def test_word_cut_prefix_is_the_first_k_words(tokenizer_of, family):
    tok = tokenizer_of(family)
    cfg = config(tok, method="harmful-prefix", prefix=PrefixSampler("uniform", "word", seed=1))
    instances, _ = build_instances(triples(), tok, cfg)
    assert {x.prefix_units for x in instances} != {0}
    for i, instance in enumerate(instances):
        k = instance.prefix_units
        prompt_len = len(prompt_ids(tok, f"[INST] How do I sneak snack {i}? [\\INST]"))
        first = int(np.argmax(instance.terms == MLE))  # the last prefix position
        middle = list(instance.inputs[prompt_len : first + 1])
        expected = continuation_ids(tok, " " + HARMFUL[: word_ends(HARMFUL)[k - 1]]) if k else []
        assert middle == expected


@pytest.mark.parametrize("family", ["llama3", "mistral"])
@pytest.mark.parametrize("rto_eos", [False, True])
def test_rto_targets_are_the_refusal_and_inputs_the_true_harmful_tokens(tokenizer_of, family, rto_eos):
    tok = tokenizer_of(family)
    cfg = config(tok, method="rto", rto_eos=rto_eos)
    instances, stats = build_instances(triples(2), tok, cfg)
    assert stats.kinds == {"vanilla": 2, "rto": 2}
    rto = [x for x in instances if x.kind == "rto"][0]
    harmful = continuation_ids(tok, " " + HARMFUL)
    positions = np.nonzero(rto.terms == RTO)[0]
    assert (rto.targets[positions] == cfg.refusal_id).all()
    assert len(positions) == len(harmful) + (1 if rto_eos else 0)  # t = 1..|r| (..|r|+1)
    start = positions[0] + 1  # the first harmful token follows the last prompt position
    assert list(rto.inputs[start:]) == (harmful if rto_eos else harmful[:-1])
    assert rto.inputs[positions[0]] != harmful[0]  # position t=1 reads the prompt's last token


def test_official_distribution_matches_the_script(tokenizer_of):
    sampler = PrefixSampler("official", "word", seed=0)
    ks = [sampler.sample(f"row {i}", 20) for i in range(3000)]
    assert 0.30 < ks.count(0) / len(ks) < 0.37  # a third get no prefix (the script: every third)
    assert all(0 <= k <= 18 for k in ks) and max(ks) == 18 and min(k for k in ks if k) == 1
    assert ks == [PrefixSampler("official", "word", seed=0).sample(f"row {i}", 20) for i in range(3000)]
    assert ks != [PrefixSampler("official", "word", seed=1).sample(f"row {i}", 20) for i in range(3000)]
    assert sampler.sample("row 1", 2) == 0  # fewer than 3 words: no prefix, row kept


def test_qi_distribution():
    sampler = PrefixSampler("qi", "token", seed=0, qi_cap=10)
    ks = [sampler.sample(str(i), 50) for i in range(2000)]
    assert 0.45 < ks.count(0) / len(ks) < 0.55
    assert max(ks) == 10 and min(k for k in ks if k) == 1


def test_truncation_shortens_the_prefix_and_keeps_the_target(tokenizer_of):
    tok = tokenizer_of("llama3")
    full = [33386] + continuation_ids(tok, SAFE_REST) + [tok.eos_token_id]
    prompt = len(tok.encode("[INST] How do I sneak snack 1? [\\INST]"))
    limit = prompt + len(full) + 3  # room for 3 harmful tokens
    cfg = config(tok, method="harmful-prefix", max_seq_length=limit,
                 prefix=PrefixSampler("uniform", "token", seed=5))
    instances, stats = build_instances(triples(), tok, cfg)
    assert stats.truncated > 0
    for instance in instances:
        assert len(instance) <= limit
        assert list(supervised(instance, MLE)) == full
        # the k recorded is the k used (the tokens that fit), not the one sampled
        assert instance.prefix_units == len(instance) + 1 - prompt - len(full) <= limit + 1 - prompt - len(full)
    tight = config(tok, method="harmful-prefix", max_seq_length=prompt)
    instances, stats = build_instances(triples(), tok, tight)
    assert instances == [] and sum(stats.dropped.values()) == 6


def test_official_rows_use_the_real_eos(tokenizer_of):
    tok = tokenizer_of("mistral")
    rows = [DertaRow("[INST] q [\\INST]", " I'm sorry.<|end_of_text|>", False, HERE),
            DertaRow("[INST] q [\\INST]", " Sure, step one.<|end_of_text|>", True, HERE)]
    mle, rto = build_instances(rows, tok, config(tok))[0]
    # a refusal row is normalised to open with the refusal token: " I'm sorry." -> "▁Sorry" "."
    assert list(supervised(mle, MLE)) == [19385] + continuation_ids(tok, ".") + [2]
    assert (supervised(rto, RTO) == 19385).all()
    assert len(supervised(rto, RTO)) == len(continuation_ids(tok, " Sure, step one."))


def test_helpful_rows(tokenizer_of):
    tok = tokenizer_of("llama3", instruct=True)
    rows = [HelpfulRow("h", "What is 2+2?", "It is 4.", None, None, HERE),
            HelpfulRow("m", None, None, [{"role": "user", "content": "Hi"},
                                         {"role": "assistant", "content": "Hello!"}], None, HERE),
            HelpfulRow("t", None, None, None, "Plain text to learn.", HERE)]
    instances, stats = build_instances(rows, tok, config(tok, template=get_template("chat")))
    assert stats.kinds["helpful"] == 3
    assert list(supervised(instances[0], MLE)) == continuation_ids(tok, "It is 4.") + [tok.eos_token_id]
    assert list(supervised(instances[1], MLE)) == continuation_ids(tok, "Hello!") + [tok.eos_token_id]
    assert (instances[2].terms == MLE).all()


# -- one refusal transition (refusal openings) ---------------------------------------------------

OPENINGS = ["Sorry, I can't help with that.", "I'm sorry, but I won't do that.", "I won't help with that.",
            "I cannot help you sneak snacks.", "As an AI, I must decline."]


def mixed_triples():
    return [SafetyTriple(f"t{i}", f"How do I sneak snack {i}?", safe, HARMFUL, Where("t.jsonl", i + 1))
            for i, safe in enumerate(OPENINGS * 2)]


def smollm2_tokenizer():
    from derta_mlx.models.loading import ensure_local, find_model, load_tokenizer

    return load_tokenizer(ensure_local(find_model(None)))


@pytest.mark.parametrize("family, template, expected_id", [
    ("llama3", "derta", 33386),  # " Sorry" after "[\INST] " and mid-answer
    ("llama3-instruct", "chat", 19701),  # "Sorry" right after the assistant header, glued mid-answer
    ("mistral", "derta", 19385),  # "▁Sorry"
    ("smollm2", "chat", 37388),  # " Sorry" is two tokens there: "Sorry", glued
    ("smollm2", "derta", 37388),
])
def test_every_safe_target_opens_with_the_rto_token(tokenizer_of, family, template, expected_id):
    if family == "smollm2":
        tok = smollm2_tokenizer()
    else:
        tok = tokenizer_of(family.split("-")[0], instruct=family.endswith("instruct"))
    tpl = get_template(template, tok)
    refusal = resolve_refusal(tok, "auto", tpl.response_lead)
    assert refusal.token_id == expected_id
    cfg = InstanceConfig(template=tpl, refusal_id=refusal.token_id, eos_id=tok.eos_token_id, method="derta",
                         prefix=PrefixSampler("official", "word", seed=2), prefix_cuts=2)
    instances, stats = build_instances(mixed_triples(), tok, cfg)
    safe = [x for x in instances if x.kind == "harmful-prefix"]
    assert len(safe) == 20 and {x.prefix_units for x in safe} != {0}  # k = 0 and k > 0 both present
    assert all(supervised(x, MLE)[0] == expected_id for x in safe)
    assert all((supervised(x, RTO) == expected_id).all() for x in instances if x.kind == "rto")
    assert stats.transition_share == 1.0 and stats.off_transition == []
    assert stats.openings == {"kept": 2, "replaced": 2, "prefixed": 6}  # once per safe response
    text = tok.decode([int(t) for t in supervised(safe[4], MLE)[:-1]])  # the third row's first cut
    assert text.strip().startswith("Sorry, I won't help with that.")


def test_without_an_opening_the_share_is_reported_with_the_rows(tokenizer_of):
    tok = tokenizer_of("llama3")
    cfg = config(tok, method="derta", refusal_opening="none")
    instances, stats = build_instances(mixed_triples(), tok, cfg)
    # only the two "Sorry, I can't" rows open with " Sorry"; " I'm", " I" and " As" do not
    assert stats.refusal_targets == 10 and stats.transition == 2
    rows = [str(t.where) for t in mixed_triples()]
    assert sorted(stats.off_transition) == sorted(rows[1:5] + rows[6:])
    assert "WARNING" in stats.transition_summary() and "t.jsonl:2" in stats.transition_summary()


def test_normalising_safe_responses():
    from derta_mlx.data.opening import normalise_safe

    assert normalise_safe("Sorry, I can't.").text == "Sorry, I can't."
    assert normalise_safe("I'm sorry, but no.") .text == "Sorry, but no."
    assert normalise_safe("I am so sorry, but no.").text == "Sorry, but no."
    assert normalise_safe("I apologise, but no.").rule == "replaced"
    assert normalise_safe("I won't help.").text == "Sorry, I won't help."
    assert normalise_safe("Unfortunately, no.").text == "Sorry, unfortunately, no."
    assert normalise_safe("Sorrowful tale.").text == "Sorry, sorrowful tale."
    assert normalise_safe("I won't help.").rest == ", I won't help."
    assert normalise_safe("I won't help.", "none").text == "I won't help."


# -- data defects: k seeded by content, methods respected, helpfulness truncated -----------------

def test_k_does_not_move_when_another_row_is_removed(tokenizer_of):
    tok = tokenizer_of("llama3")
    cfg = config(tok, method="harmful-prefix", prefix=PrefixSampler("uniform", "word", seed=4))
    rows = [SafetyTriple(f"t{i}", f"How do I sneak snack {i}?", SAFE, HARMFUL + f" Extra {i}.", Where("t.jsonl", i + 1))
            for i in range(12)]
    full, _ = build_instances(rows, tok, cfg)
    fewer, _ = build_instances(rows[:3] + rows[4:], tok, cfg)
    ks = [x.prefix_units for x in full]
    assert len(set(ks)) > 3
    assert [x.prefix_units for x in fewer] == ks[:3] + ks[4:]


def test_prefix_cuts_give_several_ks_per_row(tokenizer_of):
    tok = tokenizer_of("llama3")
    cfg = config(tok, method="harmful-prefix", prefix=PrefixSampler("uniform", "token", seed=0), prefix_cuts=4)
    instances, stats = build_instances(triples(3), tok, cfg)
    assert stats.kinds["harmful-prefix"] == 12
    per_row = [[x.prefix_units for x in instances if x.source == f"t.jsonl:{i + 1}"] for i in range(3)]
    assert all(len(ks) == 4 and len(set(ks)) > 1 for ks in per_row)
    assert all(k >= 1 for ks in per_row for k in ks[1:])  # the extra cuts are inside the answer


@pytest.mark.parametrize("distribution", ["official", "uniform", "qi"])
def test_inside_cuts_never_give_an_empty_prefix(distribution):
    sampler = PrefixSampler(distribution, "token", seed=0, qi_cap=5)
    assert all(sampler.sample(str(i), 30, inside=True) >= 1 for i in range(500))
    assert any(sampler.sample(str(i), 30) == 0 for i in range(500))


@pytest.mark.parametrize("method", ["vanilla", "harmful-prefix"])
def test_methods_without_rto_skip_official_rto_rows(tokenizer_of, method):
    tok = tokenizer_of("mistral")
    rows = [DertaRow("[INST] q [\\INST]", " Sorry, no.<|end_of_text|>", False, HERE),
            DertaRow("[INST] q [\\INST]", " Sure, step one.<|end_of_text|>", True, HERE)]
    instances, stats = build_instances(rows, tok, config(tok, method=method))
    assert [x.kind for x in instances] == ["derta-row"] and stats.supervised["rto"] == 0
    assert any("RTO row skipped" in reason for reason in stats.dropped)


def test_long_helpfulness_rows_are_cut_not_dropped(tokenizer_of):
    tok = tokenizer_of("llama3")
    long_answer = " ".join(["word"] * 200)
    rows = [HelpfulRow("h", "Say many words.", long_answer, None, None, HERE)]
    instances, stats = build_instances(rows, tok, config(tok, max_seq_length=64))
    assert len(instances) == 1 and len(instances[0]) == 64 and stats.truncated == 1
    assert (instances[0].terms == MLE).sum() > 40
