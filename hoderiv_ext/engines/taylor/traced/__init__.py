"""The Taylor engine over traced graphs: any function whose aten ops have jet rules.

capture.py (trace once, cache, retrace on structure change), interpreter.py
(run the graph on jets), jets.py (what a jet is), rules.py (the registry and
shared helpers), shape_rules.py, linear_rules.py, unary_rules.py and
product_rules.py (one rule per aten op), series.py (truncated power series: the univariate
jets' composition and Cauchy product), run.py (the canonical results, directional derivatives).
"""
