"""Resend, the transactional email provider: an HTTP client and a local fake speaking its JSON."""
