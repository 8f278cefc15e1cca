"""``maskgen serve``: a browser editor for scenes (issue 15).

- :mod:`maskgen.serve.session` -- one :class:`maskgen.editing.scene.Scene` with undo/redo
  snapshots, the completions the page shows, re-completion with a drawn amodal box, a lock; the
  store of sessions (least recently used evicted);
- :mod:`maskgen.serve.security` -- Host/Origin checks, body-size limit, security headers;
- :mod:`maskgen.serve.app` -- the Starlette app: the page, its static files and the JSON API;
- :mod:`maskgen.serve.example` -- the shipped example scene.

Starlette, uvicorn and python-multipart are the optional extra ``serve``; importing this package
does not import them.
"""
