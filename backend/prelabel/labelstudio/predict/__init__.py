"""Label Studio ``/predict``: the request parsed once (request.py), what every part shares (setup.py), task images
(images.py), video tasks and propagation (video.py), smart-tool clicks (interactive.py), "label one, find all"
(exemplars.py), failed tasks (failures.py), and the predictor that routes a request to them (predictor.py)."""
