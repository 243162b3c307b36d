#!/usr/bin/env python3
"""CDK entry point: ``cdk synth|deploy|destroy`` (context values: see infra/config.py)."""

from infra.app_builder import build_app

app, _ = build_app()
app.synth()
