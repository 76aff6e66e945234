"""The Stage Probe (the paper's Fig. 2 analysis): `run` makes the base image and one image per
probed step, `picture` draws them as a labelled grid and a difference plot."""
from .picture import difference_plot, probe_grid
from .run import ProbeRun, pixel_differences, probe, probe_runs
