"""Tenant-specific configuration of RAG pipelines."""
