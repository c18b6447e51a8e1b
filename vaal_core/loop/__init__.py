"""The active-learning loop: a project round (round.py), the oracle
simulation (simulate.py), and what they measured as tables, sentences
(report.py) and a chart (chart.py)."""
