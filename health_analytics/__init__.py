"""health-analytics: the Spark analytics engine of a personal health-metrics app."""

__version__ = "0.1.0"
