"""Upstream data: Eventbrite and Google Maps clients, their local fakes, the synthetic city."""
