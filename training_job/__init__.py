"""The trainer: windows of recent readings -> validated float32 builtin-op TFLite models."""
