"""Building Godo's images and running its compose stack with podman, on this kind of machine.

`python -m deploy.images` (`make image`) builds the images; `python -m deploy.smoke`
(`make compose-smoke`) brings the whole stack up, runs the pipeline, fetches a feed and tears it
down. Host-side tools: nothing here is copied into an image.
"""
