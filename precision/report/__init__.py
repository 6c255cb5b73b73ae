"""Reporting, which only reads stored results: summaries, figures (the only seaborn user),
the tutorial's claims and the report document. The top floor of the pipeline."""
