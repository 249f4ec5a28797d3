"""End-to-end tests against a real single-node Docker Swarm (see conftest.py)."""
