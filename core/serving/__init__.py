"""Using a finished run: scoring files, the REST service, export, formula-safe CSV."""
