"""Tiny study specs shared by the tests of the command line, the cache and the output folder:
two problems, two formats, four grid cells, one input each (a run takes about a second), one
grid cell per chunk (``chunk_elements = 1``) so that a run is made of eight chunks to kill,
resume and damage."""

TINY = """\
name = "tiny"
seed = 3
formats = ["float16", "float64"]
problems = ["softmax", "logsumexp"]
chunk_elements = 1

[grid]
log10_cond = [0, 2]
log10_magnitude = [0, 2]
sizes = [10]
samples_per_cell = 1
"""
