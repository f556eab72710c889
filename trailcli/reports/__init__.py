"""Reports over the logs: each returns a frame and never prints."""
