"""The HTML dashboard (GET /): counts by queue and status, recent jobs, links to the API."""
