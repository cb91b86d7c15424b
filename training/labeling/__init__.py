"""Stage 4, labels: triple-barrier labels and sample weights, from the bars after each decision only."""
