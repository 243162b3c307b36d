"""hybridstream: edge-cloud stream analytics for Raspberry Pi fleets (CLI and local stack)."""

__version__ = "0.1.0"
