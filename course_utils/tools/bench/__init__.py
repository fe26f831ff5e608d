"""``python -m course_utils bench``: what the course costs to run, and whether its models learn.

Measured, not hoped (the budgets: ``budgets.BUDGETS``). The command

1. runs every solution notebook (or the ones named) top to bottom in a fresh kernel, one at a
   time, on the device asked for (``notebooks``), and records its wall time, the kernel
   process's peak memory (``probe``) and the learning figures it reported with
   ``course_utils.report_metric``;
2. times the solutions' from-scratch ``conv2d`` and attention against torch's, side by side
   (``micro``);
3. prints a markdown table and writes a JSON file (``report``), and with ``--check`` exits 1
   when a notebook fails or a budget or learning threshold of ``budgets`` is missed.

``command.main`` ties them together. This package's ``__init__`` imports nothing: the kernels
import ``course_utils.tools.bench.probe`` and nothing else of it.
"""
