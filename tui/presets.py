"""Presets for the Train form: starting values for the main knobs (any field can be edited after)."""

PRESETS = {
    "quick test (5 steps)": {"iters": 5, "batch_size": 2, "max_seq_length": 128, "learning_rate": 1e-3,
                             "steps_per_report": 1, "save_every": 5, "probe_after": False},
    "demo (the main job)": {"iters": 60, "batch_size": 4, "max_seq_length": 512, "learning_rate": 1e-4,
                            "steps_per_report": 10, "save_every": 50, "probe_after": True},
    "paper LoRA (7B/8B)": {"iters": 600, "batch_size": 4, "max_seq_length": 1024, "learning_rate": 1e-4,
                           "lora_rank": 16, "num_layers": -1, "steps_per_report": 10, "save_every": 100,
                           "probe_after": True},
}
