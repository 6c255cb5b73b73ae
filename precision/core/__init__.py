"""The ground floor: formats and exact rounding, number systems, error metrics, emulated
arithmetic, the table schema and typed input values. Imports nothing else of the package."""
