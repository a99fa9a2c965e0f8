"""`derta-mlx eval`: attack suites, layered judges, ASR and helpfulness reports.

  suites     read suite files (DeRTa's test format: jsonl {"question"} plus "answer")
  prompts    the exact prompt strings (chat template, official eval strings, raw completion)
  generate   batched greedy generation, resumable, one record per line
  judge      verdict layers: refusal detector, App. C rule, local LLM judge, human labels
  scoring    GSM8K / MMLU answer extraction, "did it answer"
  report     summary tables (markdown, JSON, PNG) and run comparison
"""
