"""Offline pre-labeling of folders, globs, manifests and Label Studio projects, with resume."""
