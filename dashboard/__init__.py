"""FinTune's Streamlit dashboard: a router (app.py), thin pages, shared state and components."""
