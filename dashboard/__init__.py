"""FinTune's Streamlit dashboard: a router (app.py), thin pages (views/), shared state (state.py),
and what the pages draw with: text (formatting.py), tables (tables.py), figures (charts.py), the
live run view (live.py) and shared widgets (widgets.py)."""
