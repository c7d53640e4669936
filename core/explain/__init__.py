"""SHAP explanations of a run and the queue that computes them."""
