"""Automated QA of COCO and Label Studio exports."""
