"""Deployment: exported policies (no torch needed to run them) and the deployment runner."""
