"""Tool-free dataset files written from Regions: COCO instances and YOLO datasets."""
