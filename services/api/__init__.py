"""FastAPI admin API (health and metrics now; curation endpoints come with the curation issue)."""
