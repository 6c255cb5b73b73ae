"""Developer tools that regenerate parts of the documentation (``make docs-image``,
``make docs-errors``); not part of the package."""
