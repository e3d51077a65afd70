"""Spark stage: session factory, analytics and the preprocessing pipeline."""
