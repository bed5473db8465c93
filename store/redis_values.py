"""Values read back from Redis: bytes from a client without `decode_responses`, str from one
with it (the API's asyncio pool and the pipelines' client differ), handled in one place."""


def text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
