"""Python client for the convserve API."""
