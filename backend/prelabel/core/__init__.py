"""What a pre-annotation is, free of models and tools: regions, shapes, labels, geometry, images, uncertainty."""
