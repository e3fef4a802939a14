"""What the service's parts share without importing jina: the endpoint schemas."""
