"""SHAP explanations of a run, and the queue and the separate process that compute them."""
