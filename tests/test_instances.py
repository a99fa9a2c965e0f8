"""Token-level instances: masks align for both real tokenizers, RTO targets, truncation."""

import numpy as np
import pytest

from derta_mlx.data.formats import DertaRow, HelpfulRow, SafetyTriple, Where
from derta_mlx.data.instances import IGNORE, MLE, RTO, InstanceConfig, build_instances
from derta_mlx.data.prefix import PrefixSampler, word_ends
from derta_mlx.refusal import resolve_refusal
from derta_mlx.segments import continuation_ids, prompt_ids
from derta_mlx.templates import get_template

HERE = Where("test.jsonl", 1)
SAFE = "I'm sorry, I can't help with that. Maybe ask a grown-up for a snack instead."
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
        # the supervised tokens are exactly the safe response (in context) and EOS
        assert list(target) == continuation_ids(tok, " " + SAFE) + [tok.eos_token_id]
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
    ks = [sampler.sample(i, 20) for i in range(300)]
    assert all(k == 0 for i, k in enumerate(ks) if i % 3 == 0)
    assert all(1 <= k <= 18 for i, k in enumerate(ks) if i % 3)
    assert ks == [PrefixSampler("official", "word", seed=0).sample(i, 20) for i in range(300)]
    assert ks != [PrefixSampler("official", "word", seed=1).sample(i, 20) for i in range(300)]
    assert sampler.sample(1, 2) == 0  # fewer than 3 words: no prefix, row kept


def test_qi_distribution():
    sampler = PrefixSampler("qi", "token", seed=0, qi_cap=10)
    ks = [sampler.sample(i, 50) for i in range(2000)]
    assert 0.45 < ks.count(0) / len(ks) < 0.55
    assert max(ks) == 10 and min(k for k in ks if k) == 1


def test_truncation_shortens_the_prefix_and_keeps_the_target(tokenizer_of):
    tok = tokenizer_of("llama3")
    full = continuation_ids(tok, " " + SAFE) + [tok.eos_token_id]
    prompt = len(tok.encode("[INST] How do I sneak snack 1? [\\INST]"))
    limit = prompt + len(full) + 3  # room for 3 harmful tokens
    cfg = config(tok, method="harmful-prefix", max_seq_length=limit,
                 prefix=PrefixSampler("uniform", "token", seed=5))
    instances, stats = build_instances(triples(), tok, cfg)
    assert stats.truncated > 0
    for instance in instances:
        assert len(instance) <= limit
        assert list(supervised(instance, MLE)) == full
    tight = config(tok, method="harmful-prefix", max_seq_length=prompt)
    instances, stats = build_instances(triples(), tok, tight)
    assert instances == [] and sum(stats.dropped.values()) == 6


def test_official_rows_use_the_real_eos(tokenizer_of):
    tok = tokenizer_of("mistral")
    rows = [DertaRow("[INST] q [\\INST]", " I'm sorry.<|end_of_text|>", False, HERE),
            DertaRow("[INST] q [\\INST]", " Sure, step one.<|end_of_text|>", True, HERE)]
    mle, rto = build_instances(rows, tok, config(tok))[0]
    assert list(supervised(mle, MLE)) == continuation_ids(tok, " I'm sorry.") + [2]
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
