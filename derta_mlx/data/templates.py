"""Prompt templates: the model's own chat template, or DeRTa's exact legacy strings.

The official code's "[\\INST]" (a backslash, from an unescaped Python string) became the
released checkpoints' real format, so the legacy templates keep it byte for byte.
"""

from dataclasses import dataclass

from derta_mlx.common.errors import UserError

DERTA_TRAIN = "[INST] {question} [\\INST]"
DERTA_EVAL = "[INST] \n{question}\n\n [\\INST]"


@dataclass(frozen=True)
class Template:
    """How a question becomes a prompt, and what joins the prompt to its response.

    `response_lead` is the text placed before a response: DeRTa's strings put a space
    between "[\\INST]" and the answer, a chat template ends with the assistant header.
    """

    name: str
    response_lead: str

    def prompt(self, question: str, tokenizer) -> str:
        if self.name == "derta":
            return DERTA_TRAIN.format(question=question)
        if self.name == "derta-eval":
            return DERTA_EVAL.format(question=question)
        if not getattr(tokenizer, "chat_template", None):
            raise UserError(
                "this model's tokenizer has no chat template; use the DeRTa template (--template derta)"
            )
        messages = [{"role": "user", "content": question}]
        return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


TEMPLATES = {
    "derta": Template("derta", response_lead=" "),
    "derta-eval": Template("derta-eval", response_lead=" "),
    "chat": Template("chat", response_lead=""),
}


def check_template_name(name: str) -> None:
    """Raise UserError for a name no template has; needs no tokenizer, so it runs before any weights load."""
    if name != "auto" and name not in TEMPLATES:
        raise UserError(f"unknown template {name!r}; choose one of: auto, {', '.join(TEMPLATES)}")


def get_template(name: str, tokenizer=None) -> Template:
    """A template by name; "auto" picks the chat template when the tokenizer has one."""
    check_template_name(name)
    if name == "auto":
        name = "chat" if getattr(tokenizer, "chat_template", None) else "derta"
    return TEMPLATES[name]
