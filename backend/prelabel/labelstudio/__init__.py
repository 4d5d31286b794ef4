"""Everything Label Studio: labeling configs, results both ways, the ML backend, task images, the client,
webhooks, ranking views, and the local launcher and demo."""
