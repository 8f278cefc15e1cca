"""Shared mechanisms of both systems: boxes, mask crops/pastes, RLE/polygons, alpha compositing in
depth order, affine warps, metrics and safe I/O. Numpy at the API edge; see each module's
docstring for its coordinate conventions."""
