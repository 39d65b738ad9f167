"""Plots of evaluation results. Computations live in :mod:`cltdr.viz.points` (and :mod:`cltdr.evaluation`);
the modules here only draw them, with matplotlib's Agg canvas (no display needed), and write PNG files
atomically."""
