"""Pure transforms: DataFrames in, DataFrames out. No Dagster, FastAPI or vendor SDKs here."""
