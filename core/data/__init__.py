"""Data in: read a file, infer the schema, split the rows, fit the preprocessing."""
