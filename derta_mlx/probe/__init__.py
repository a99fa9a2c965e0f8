"""Probing refusal inside harmful answers: curves and continuations at chosen positions, the
refusal detector, coherence classes, helpfulness on benign questions, the main job's before/after."""
