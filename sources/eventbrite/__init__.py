"""Eventbrite API v3: the response parser shared by the real client and synthetic landings."""
