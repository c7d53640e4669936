"""The sections of the model report, each a list of markup parts drawn from a run's facts.

Data fingerprint, split, model, reproducibility, test metrics, calibration, attributions,
stability and leakage, known limitations: every number comes from :mod:`core.review.facts`, every
chart from :mod:`core.review.figures`, every piece of markup from :mod:`core.review.page`.

By what they describe: the boxes at the top (:mod:`.glance`), the rows (:mod:`.data`: data
fingerprint, split), the model (:mod:`.model`: model, reproducibility), how well it does
(:mod:`.performance`: test metrics, calibration), how its decision treats people
(:mod:`.fairness`: outcomes by group; :mod:`.decisions`: reason codes and what would change the
decision) and what to be wary of (:mod:`.risks`: attributions, stability and leakage, known
limitations).
"""
