"""Reading runs side by side and the model-risk report."""
