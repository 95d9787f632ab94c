"""Training: per-source preliminary models, combiners, the pooled baseline (issue 6)."""
