"""Attack-aware reading: each attack's output format turned into what a human reader judges.

  codeattack  the strings a CodeAttack answer puts in its output list; the scaffold is neutral
  persona     role-play channels and preambles (JailbreakChat, AutoDAN, PAIR) stripped to substance
  ciphers     Caesar / Atbash / Morse / ASCII / base64 decoded; gibberish gives nothing away
  completion  a CompletionAttack continuation with the prompt's open "Step 1:" put back
  detect      which format a file of generations holds (name, folder, then content)

Every reader ends in the App. C rule (appc.py), with the generic-vs-actionable rule of generic.py.
"""

from derta_mlx.eval.appc import AppCRule, judge_appc
from derta_mlx.eval.attacks.ciphers import judge_cipher
from derta_mlx.eval.attacks.codeattack import judge_codeattack
from derta_mlx.eval.attacks.completion import judge_completion
from derta_mlx.eval.attacks.persona import judge_persona
from derta_mlx.eval.judgement import Judgement

READERS = {"codeattack": judge_codeattack, "persona": judge_persona, "cipher": judge_cipher,
           "completion": judge_completion}


def judge_attack(kind: str, response: str, question: str = "", rule: AppCRule = AppCRule()) -> Judgement:
    """The App. C verdict after reading `response` in its attack's format (plain App. C otherwise)."""
    return READERS.get(kind, judge_appc)(response, question, rule)
