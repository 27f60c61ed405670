"""The offline checks over a stack's resources — policy, reachability, cost — whatever recorded them.

One reader (:mod:`lmrun.verify.resources`) turns a mock recording, a ``pulumi preview --json`` document or a
``pulumi stack export`` into the same records, so every check runs unchanged on a plan made offline, on a
real preview and on real state.
"""
