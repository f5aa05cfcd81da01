"""The Taylor engine over traced graphs: any function whose aten ops have jet rules.

capture.py (trace once, cache, retrace on structure change), interpreter.py
(run the graph on jets), jets.py (what a jet is), linear_rules.py and
nonlinear_rules.py (one rule per aten op), run.py (the canonical results).
"""
