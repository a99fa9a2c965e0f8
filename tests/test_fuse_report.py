"""The fuse gate's table reads in an 80-column terminal (the TUI's Runs screen shows it)."""

from derta_mlx.fuse.report import format_gate_table


def test_the_gate_table_fits_80_columns():
    row = {"position": 40, "refusal_rate": 1.0, "coherent": 0.97, "token_loop": 0.1, "mean_p_refusal": 0.841, "n": 30}
    side = {"rows": [row] * 5, "helpfulness": {"n": 30, "answered": 0.5, "refused": 0.2}}
    gate = {"adapter": side, "fused": side, "passed": True,
            "tolerance": {"refusal_points": 5, "coherent_points": 5, "p_refusal": 0.1, "benign_points": 10}}
    lines = format_gate_table(gate).splitlines()
    assert lines[-1].startswith("PASSED") and len(lines) == 12
    assert max(len(line) for line in lines) <= 80, max(lines, key=len)


def test_the_gate_table_shows_the_base_models_helpfulness_and_fits_80_columns():
    row = {"position": 40, "refusal_rate": 1.0, "coherent": 0.97, "token_loop": 0.1, "mean_p_refusal": 0.841, "n": 30}
    borderline = {"overall": {"over_refusal": 45.0}}
    side = {"rows": [row] * 5, "helpfulness": {"n": 30, "answered": 0.3, "refused": 0.6}, "borderline": borderline}
    base = {"helpfulness": {"n": 30, "answered": 0.5, "refused": 0.03}, "borderline": {"overall": {"over_refusal": 4.0}}}
    gate = {"adapter": side, "fused": side, "base": base, "passed": False,
            "lost": ["ordinary questions refused: base 3% -> fused 60% (+57 points, limit 10)"],
            "tolerance": {"refusal_points": 5, "coherent_points": 5, "p_refusal": 0.1, "benign_points": None,
                          "over_refusal_points": 10, "answer_points": 10}}
    text = format_gate_table(gate)
    assert "Base model alone -> fused" in text and "over-refused    4% -> 45%   <" in text
    assert "answered correctly   50% -> 30%   <" in text and "vs the base: 10 points more refusal" in text
    assert text.splitlines()[-1].startswith("  - ordinary questions refused: base 3%")
    assert max(len(line) for line in text.splitlines()) <= 80, max(text.splitlines(), key=len)
