"""The Lambda functions, one folder each (``<folder>/handler.py``), and what they share
(:mod:`lambdas.shared`). Each function's package holds its folder's files at the top, plus
``lambdas/__init__.py``, ``lambdas/shared.py`` and ``model_contract/`` (the wire contract)."""
