"""Archive names: from the untrusted descriptions uploaders wrote to safe, stable paths.

- :mod:`.decoders`: what each upload tool wrote (mt-aws-glacier, FastGlacier, CloudBerry,
  QNAP, plain text) -> a path and an mtime. Pure.
- :mod:`.safe`: untrusted text -> path components that are always valid, and one unique
  path per file of the archives view. Pure.
- :mod:`.sources`: where a mount learns descriptions (saved metadata, inventories, the
  header that comes with an output's first leaf) and the namer the tree uses.
"""
