"""Jobs: they only wire readers, transforms, writers and the dead-letter queue together."""
