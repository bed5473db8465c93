"""Assets, one module per stage of the data flow."""
