"""Reports: gathering runs, comparing them with their presets and the paper, judging, rendering
tables (Markdown, CSV, LaTeX), the results README and plots.
"""
