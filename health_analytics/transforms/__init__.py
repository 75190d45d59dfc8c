"""Pure Spark transforms: DataFrame in, DataFrame out. No session, path or connection lives here."""
