"""A seeded synthetic city and simulated app behaviour, so every part can run offline."""
