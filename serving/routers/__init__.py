"""One router per resource; each is thin (validate, call `store`, map to a response model)."""
