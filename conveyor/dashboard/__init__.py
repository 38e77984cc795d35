"""The live dashboard (SPEC §9): HTML pages at / and /dashboard/..., filled and refreshed by
their script from the JSON API."""
