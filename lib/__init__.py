"""ee-cancel: cancel Earth Engine long-running operations from Pub/Sub events."""
