"""The prompt a suite item becomes, as text.

`derta-eval` reproduces the official `evaluation.py` strings byte for byte, including the
zero-shot GSM8K and MMLU wrappers (the few-shot strings there are defined, then overwritten).
`chat` sends the same (wrapped) question through the model's own chat template. A completion
attack sends the raw text with no template: the model simply continues it.
"""

from derta_mlx.common.errors import UserError
from derta_mlx.data.templates import get_template

GSM8K_WRAP = "\n {question} \n "
MMLU_WRAP = "Choose the correct option for the given question.\n" + "\n\n\nQuestion: {question}\n"
ATTACKS = ("auto", "templated", "completion")
EVAL_TEMPLATES = ("auto", "chat", "derta-eval", "derta")


def wrap_question(question: str, kind: str) -> str:
    if kind == "gsm8k":
        return GSM8K_WRAP.format(question=question)
    if kind == "mmlu":
        return MMLU_WRAP.format(question=question)
    return question


def resolve_attack(attack: str, kind: str) -> str:
    """auto: completion for completion-attack suites (their rows are declarative lead-ins)."""
    if attack not in ATTACKS:
        raise UserError(f"unknown attack {attack!r}; choose one of: {', '.join(ATTACKS)}")
    if attack == "auto":
        return "completion" if kind == "completion" else "templated"
    return attack


def resolve_template(name: str, catalogue_template: str, tokenizer) -> str:
    """auto: the chat template for instruct models, else the official evaluation string."""
    if name not in EVAL_TEMPLATES:
        raise UserError(f"unknown template {name!r}; choose one of: {', '.join(EVAL_TEMPLATES)}")
    if name != "auto":
        return name
    if catalogue_template == "chat" or (catalogue_template == "auto" and getattr(tokenizer, "chat_template", None)):
        return "chat"
    return "derta-eval"


def build_prompt(question: str, kind: str, attack: str, template: str, tokenizer=None) -> str:
    if attack == "completion":
        return question
    wrapped = wrap_question(question, kind)
    if template == "chat":
        # a chat turn has no use for the official wrappers' padding newlines
        wrapped = wrapped.strip()
    return get_template(template, tokenizer).prompt(wrapped, tokenizer)
