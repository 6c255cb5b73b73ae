"""Running studies: specs and plugins, inputs, chunks, measuring a variant on a batch, executors,
the size estimate before a run, ``evaluate`` for one input, ``run_study`` from Python,
reproduction and staleness. Imports the floors below (core, store, problems, truth); nothing
below imports it."""
