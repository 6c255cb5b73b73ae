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


FOUR_FORMATS = {
    "name": "tiny",
    "seed": 7,
    "formats": ["float16", "bfloat16", "float32", "float64"],
    "problems": ["softmax", "logsumexp"],
    "grid": {"log10_cond": [0, 2], "log10_magnitude": [0, 2], "sizes": [10], "samples_per_cell": 2},
    "chunk_elements": 1,  # one grid cell per chunk: eight chunks to resume
}
"""The executor's and the estimate's tiny spec, as a dict: the same problems and cells as
`TINY`, in four formats with two inputs a cell (sixteen inputs, eight chunks)."""
