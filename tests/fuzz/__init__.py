"""Fuzz harnesses and the checks they share with the suite (see README.md here)."""
