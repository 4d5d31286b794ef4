"""Learning from human corrections: match annotations to predictions, store outcomes, fit, report."""
