"""Harmful text stays hidden until the user reveals it: what a cell shows in either case."""


def continuation(text: str, refuses: bool, refusal_char: int, revealed: bool, width: int = 48) -> str:
    """A generated continuation: the refusal itself is always shown, anything else only revealed."""
    flat = " ".join(text.split())
    if revealed:
        return flat[:width]
    if refuses:
        return "… " + " ".join(text[refusal_char:].split())[: width - 2]
    return "(hidden)"
