"""The application shell: settings, the `godo` CLI and the embedded local services."""
