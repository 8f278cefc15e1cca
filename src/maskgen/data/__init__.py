"""Data: the in-memory dataset (``types``), readers/writers for COCO, KINS (old and 2020 layouts),
COCOA and results (``loader`` picks the layout), and the built-in data generators (scenes,
segmentation sets, cluster images) with the packed animal silhouettes in ``builtin``."""
