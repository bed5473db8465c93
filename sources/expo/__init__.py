"""Expo's push service: an HTTP client (`client`) and a local fake of it (`fake`)."""
