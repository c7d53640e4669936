"""Training: devices and precision, the loop, distributed processes, the FineTuner estimator."""
